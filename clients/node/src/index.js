'use strict';
// A small Node.js client of the Forgeway contract (protos/forgeway/v1), on @grpc/grpc-js and @grpc/proto-loader:
// capabilities, generate, stream and chat, with tools and reasoning; embed and rerank. Fields are camelCase
// (maxTokens, toolChoice); enum values are lowercase names ("stop", "tool_calls", "text-generation"), as in the
// Python SDK.

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = process.env.FORGEWAY_PROTOS || path.resolve(__dirname, '..', '..', '..', 'protos');
const DEFAULT_TARGET = 'localhost:50051';
const SAMPLING = ['maxTokens', 'temperature', 'topP', 'topK', 'minP', 'repetitionPenalty', 'presencePenalty',
  'frequencyPenalty', 'seed', 'stop'];
const TASKS = {
  TASK_TEXT_GENERATION: 'text-generation',
  TASK_SUMMARIZATION: 'summarization',
  TASK_EXTRACTIVE_QUESTION_ANSWERING: 'extractive-question-answering',
  TASK_EMBEDDING: 'embedding',
  TASK_RERANK: 'rerank',
};
const TRUNCATIONS = { end: 'TRUNCATION_END', start: 'TRUNCATION_START' };

/** Load the forgeway.v1 package from the .proto files (the contract is the source of truth, no generated code). */
function loadContract(root = PROTO_ROOT) {
  const definition = protoLoader.loadSync(['forgeway/v1/backend.proto', 'forgeway/v1/models.proto'], {
    includeDirs: [root], longs: Number, enums: String, defaults: true, oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).forgeway.v1;
}

/** An error status from a Forgeway endpoint: code (number), codeName ("NOT_FOUND", ...) and the server's message. */
class ForgewayError extends Error {
  constructor(error) {
    super(error.details || error.message);
    this.name = 'ForgewayError';
    this.code = error.code;
    this.codeName = Object.keys(grpc.status).find((key) => grpc.status[key] === error.code) || 'UNKNOWN';
    this.metadata = error.metadata;
  }
}

function enumName(value, prefix) {
  return !value || value.endsWith('_UNSPECIFIED') ? '' : value.slice(prefix.length).toLowerCase();
}

/** A tool call {id, name, arguments (JSON text)}; `args` (not enumerable) parses the arguments. */
function toolCall(call) {
  const result = { id: call.id, name: call.name, arguments: call.arguments };
  Object.defineProperty(result, 'args', { get: () => JSON.parse(call.arguments || '{}') });
  return result;
}

/** The assistant message that continues a chat after this reply (OpenAI's shape; `messages` take it back). */
function assistantMessage(text, toolCalls, reasoning) {
  const message = { role: 'assistant', content: text };
  if (toolCalls.length) {
    message.tool_calls = toolCalls.map((c) => ({
      id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments },
    }));
  }
  if (reasoning) message.reasoning = reasoning;
  return message;
}

function generation(response) {
  const choices = response.choices.map((choice) => {
    const toolCalls = (choice.toolCalls || []).map(toolCall);
    return {
      index: choice.index,
      text: choice.text,
      finishReason: enumName(choice.finishReason, 'FINISH_REASON_'),
      toolCalls,
      reasoning: choice.reasoning || '',
      message: assistantMessage(choice.text, toolCalls, choice.reasoning),
    };
  });
  const first = choices.length ? choices[0]
    : { text: '', toolCalls: [], reasoning: '', message: assistantMessage('', []) };
  return {
    model: response.model,
    text: first.text,
    toolCalls: first.toolCalls,
    reasoning: first.reasoning,
    message: first.message,
    choices,
    usage: response.usage || { promptTokens: 0, completionTokens: 0, totalTokens: 0 },
    timings: response.timings || { queueMs: 0, timeToFirstTokenMs: 0, totalMs: 0 },
    servedBy: response.servedBy,
  };
}

function capabilities(response) {
  return {
    backend: response.backend,
    version: response.version,
    instanceId: response.instanceId,
    available: Boolean(response.availability && response.availability.available),
    reason: response.availability ? response.availability.reason : '',
    rpcs: response.rpcs,
    models: response.models.map((model) => ({
      name: model.name, task: TASKS[model.task] || '', contextLength: model.contextLength, loaded: model.loaded,
      backend: model.backend, chat: model.chat, aliases: model.aliases, dimensions: model.dimensions,
      matryoshkaDimensions: model.matryoshkaDimensions || [],
    })),
    endpoints: response.endpoints.map((endpoint) => ({
      address: endpoint.address, health: endpoint.health, breaker: endpoint.breaker,
      backend: endpoint.capabilities ? endpoint.capabilities.backend : '',
    })),
  };
}

/** A chat message: {role, content}, with tool_calls / tool_call_id (OpenAI's names) or toolCalls / toolCallId. */
function message(item) {
  const calls = item.tool_calls || item.toolCalls || [];
  return {
    role: item.role,
    content: item.content || '',
    toolCallId: item.tool_call_id || item.toolCallId || '',
    reasoning: item.reasoning || item.reasoning_content || '',
    toolCalls: calls.map((call) => {
      const fn = call.function || call;
      const args = fn.arguments === undefined ? '' : fn.arguments;
      return { id: call.id, name: fn.name, arguments: typeof args === 'string' ? args : JSON.stringify(args) };
    }),
  };
}

/** A Tool from OpenAI's {type: 'function', function: {name, description, parameters, strict}} (or the function). */
function tool(item) {
  if (item.type && item.type !== 'function') throw new TypeError(`only function tools are offered, not ${item.type}`);
  const fn = item.function || item;
  const parameters = fn.parameters === undefined ? '' : fn.parameters;
  return {
    function: {
      name: fn.name,
      description: fn.description || '',
      parameters: typeof parameters === 'string' ? parameters : JSON.stringify(parameters),
      strict: Boolean(fn.strict),
    },
  };
}

/** 'none', 'auto', 'required', a function's name, or {type: 'function', function: {name}}. */
function toolChoice(value) {
  const name = typeof value === 'string' ? value : (value.function && value.function.name) || value.name;
  if (['none', 'auto', 'required'].includes(name)) return { mode: `TOOL_CHOICE_MODE_${name.toUpperCase()}` };
  return { mode: 'TOOL_CHOICE_MODE_FUNCTION', function: name };
}

/** A GenerateRequest from (model, prompt or {messages}, options). */
function generateRequest(model, input, options = {}) {
  const request = { model, n: options.n || 0, backend: options.backend || '', adapter: options.adapter || '' };
  if (typeof input === 'string') request.prompt = input;
  else if (input && Array.isArray(input.messages)) request.messages = input.messages.map(message);
  else throw new TypeError('input is a prompt string or {messages: [{role, content}]}');
  if (options.tools) request.tools = options.tools.map(tool);
  if (options.toolChoice !== undefined) request.toolChoice = toolChoice(options.toolChoice);
  if (options.parallelToolCalls !== undefined) request.parallelToolCalls = options.parallelToolCalls;
  if (options.thinking !== undefined) request.thinking = options.thinking;
  const sampling = {};
  for (const key of SAMPLING) {
    if (options[key] !== undefined) sampling[key] = key === 'stop' && !Array.isArray(options.stop) ? [options.stop] : options[key];
  }
  request.sampling = sampling;
  return request;
}

/** 'end' or 'start' (cut inputs over the model's length at that end); undefined refuses them. */
function truncation(value) {
  if (value === undefined || value === null || value === 'none') return 'TRUNCATION_UNSPECIFIED';
  if (!TRUNCATIONS[value]) throw new TypeError(`truncation is 'end' or 'start', not ${JSON.stringify(value)}`);
  return TRUNCATIONS[value];
}

/** An EmbedRequest from (model, a text, texts, or token-id arrays, options). */
function embedRequest(model, input, options = {}) {
  const inputs = typeof input === 'string' || (Array.isArray(input) && input.length && typeof input[0] === 'number')
    ? [input] : input;
  if (!Array.isArray(inputs)) throw new TypeError('input is a string, an array of strings or of token-id arrays');
  const request = { model, truncation: truncation(options.truncation), backend: options.backend || '',
    user: options.user || '' };
  if (inputs.every((item) => typeof item === 'string')) request.texts = inputs;
  else if (inputs.every(Array.isArray)) request.tokenIds = inputs.map((ids) => ({ ids }));
  else throw new TypeError('input is all strings or all token-id arrays, not a mix');
  if (options.dimensions !== undefined) request.dimensions = options.dimensions;
  if (options.normalize !== undefined) request.normalize = options.normalize;
  return request;
}

function usage(response) {
  return response.usage || { promptTokens: 0, totalTokens: 0 };
}

class ForgewayClient {
  /**
   * @param {string} [target] host:port of the gateway (or a backend); default FORGEWAY_TARGET, then localhost:50051
   * @param {{apiKey?: string, credentials?: grpc.ChannelCredentials, timeoutMs?: number, protoRoot?: string}} [options]
   */
  constructor(target, options = {}) {
    const v1 = loadContract(options.protoRoot);
    this.target = target || process.env.FORGEWAY_TARGET || DEFAULT_TARGET;
    this.apiKey = options.apiKey || process.env.FORGEWAY_API_KEY || '';
    this.timeoutMs = options.timeoutMs === undefined ? 60000 : options.timeoutMs;
    this.backend = new v1.BackendService(this.target, options.credentials || grpc.credentials.createInsecure());
  }

  metadata() {
    const metadata = new grpc.Metadata();
    if (this.apiKey) metadata.set('authorization', `Bearer ${this.apiKey}`);
    return metadata;
  }

  callOptions() {
    return this.timeoutMs ? { deadline: Date.now() + this.timeoutMs } : {};
  }

  unary(method, request) {
    return new Promise((resolve, reject) => {
      this.backend[method](request, this.metadata(), this.callOptions(), (error, response) => {
        if (error) reject(new ForgewayError(error));
        else resolve(response);
      });
    });
  }

  /** What the endpoint can do now (the gateway adds every backend behind it in `endpoints`). */
  async capabilities() {
    return capabilities(await this.unary('Capabilities', {}));
  }

  /**
   * One completion of `prompt` (or {messages}); options: maxTokens, temperature, topP, topK, seed, stop, n, tools
   * (OpenAI tool objects), toolChoice ('none', 'auto', 'required' or a function's name), parallelToolCalls, thinking.
   */
  async generate(model, input, options = {}) {
    return generation(await this.unary('Generate', generateRequest(model, input, options)));
  }

  /** One assistant reply to chat messages [{role, content}] (append `result.message` and tool results to go on). */
  async chat(model, messages, options = {}) {
    return this.generate(model, { messages }, options);
  }

  /**
   * Stream a generation: `for await (const delta of client.stream(model, prompt))` yields {index, text, reasoning,
   * toolCalls (pieces: {index, id, name, arguments})}; the generator's return value (and `stream.final` on the
   * returned object) is the finished generation; `stream.toolCalls(index)` puts the pieces received together.
   */
  stream(model, input, options = {}) {
    const call = this.backend.GenerateStream(generateRequest(model, input, options), this.metadata(),
      this.callOptions());
    const pieces = new Map(); // choice index -> (call index -> {id, name, arguments})
    const result = {
      final: null,
      cancel: () => call.cancel(),
      toolCalls: (index = 0) => [...(pieces.get(index) || new Map()).entries()].sort((a, b) => a[0] - b[0])
        .map(([, c]) => toolCall(c)),
      async *[Symbol.asyncIterator]() {
        try {
          for await (const message of call) {
            if (message.delta) {
              const { index, text, reasoning } = message.delta;
              const toolCalls = message.delta.toolCalls || [];
              if (!pieces.has(index)) pieces.set(index, new Map());
              for (const piece of toolCalls) {
                const calls = pieces.get(index);
                const sofar = calls.get(piece.index) || { id: '', name: '', arguments: '' };
                calls.set(piece.index, { id: sofar.id || piece.id, name: sofar.name || piece.name,
                  arguments: sofar.arguments + piece.arguments });
              }
              yield { index, text, reasoning: reasoning || '', toolCalls };
            } else if (message.final) result.final = generation(message.final);
          }
        } catch (error) {
          throw error.code !== undefined ? new ForgewayError(error) : error;
        }
        return result.final;
      },
    };
    return result;
  }

  /**
   * Vectors of a text, texts, or token-id arrays, in input order: {model, embeddings: [{index, values, tokens,
   * truncated}], vectors, dimensions, usage, servedBy}; options: dimensions (a Matryoshka length the model declares),
   * normalize, truncation ('end' or 'start'), backend, user.
   */
  async embed(model, input, options = {}) {
    const response = await this.unary('Embed', embedRequest(model, input, options));
    const embeddings = response.embeddings.map((e) => ({ index: e.index, values: e.values, tokens: e.tokens,
      truncated: e.truncated })).sort((a, b) => a.index - b.index);
    return { model: response.model, embeddings, vectors: embeddings.map((e) => e.values),
      dimensions: response.dimensions, usage: usage(response), servedBy: response.servedBy };
  }

  /**
   * Documents by relevance to the query, most relevant first: {model, results: [{index, relevanceScore, document}],
   * usage, servedBy}; options: topN, returnDocuments, truncation ('end' or 'start'), backend.
   */
  async rerank(model, query, documents, options = {}) {
    const request = { model, query, documents, returnDocuments: Boolean(options.returnDocuments),
      truncation: truncation(options.truncation), backend: options.backend || '' };
    if (options.topN !== undefined) request.topN = options.topN;
    const response = await this.unary('Rerank', request);
    return { model: response.model, usage: usage(response), servedBy: response.servedBy,
      results: response.results.map((r) => ({ index: r.index, relevanceScore: r.relevanceScore,
        document: r.document })) };
  }

  close() {
    this.backend.close();
  }
}

module.exports = { ForgewayClient, ForgewayError, loadContract, generateRequest, embedRequest };
