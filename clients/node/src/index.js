'use strict';
// A small Node.js client of the Forgeway contract (protos/forgeway/v1), on @grpc/grpc-js and @grpc/proto-loader:
// capabilities, generate, stream and chat. Fields are camelCase (maxTokens); enum values are lowercase names
// ("stop", "text-generation"), as in the Python SDK.

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
};

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

function generation(response) {
  const choices = response.choices.map((choice) => ({
    index: choice.index,
    text: choice.text,
    finishReason: enumName(choice.finishReason, 'FINISH_REASON_'),
  }));
  return {
    model: response.model,
    text: choices.length ? choices[0].text : '',
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
      backend: model.backend, chat: model.chat, aliases: model.aliases,
    })),
    endpoints: response.endpoints.map((endpoint) => ({
      address: endpoint.address, health: endpoint.health, breaker: endpoint.breaker,
      backend: endpoint.capabilities ? endpoint.capabilities.backend : '',
    })),
  };
}

/** A GenerateRequest from (model, prompt or {messages}, options). */
function generateRequest(model, input, options = {}) {
  const request = { model, n: options.n || 0, backend: options.backend || '', adapter: options.adapter || '' };
  if (typeof input === 'string') request.prompt = input;
  else if (input && Array.isArray(input.messages)) request.messages = input.messages;
  else throw new TypeError('input is a prompt string or {messages: [{role, content}]}');
  const sampling = {};
  for (const key of SAMPLING) {
    if (options[key] !== undefined) sampling[key] = key === 'stop' && !Array.isArray(options.stop) ? [options.stop] : options[key];
  }
  request.sampling = sampling;
  return request;
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

  /** One completion of `prompt` (or {messages}); options: maxTokens, temperature, topP, topK, seed, stop, n, ... */
  async generate(model, input, options = {}) {
    return generation(await this.unary('Generate', generateRequest(model, input, options)));
  }

  /** One assistant reply to chat messages [{role, content}]. */
  async chat(model, messages, options = {}) {
    return this.generate(model, { messages }, options);
  }

  /**
   * Stream a generation: `for await (const delta of client.stream(model, prompt))` yields {index, text};
   * the generator's return value (and `stream.final` on the returned object) is the finished generation.
   */
  stream(model, input, options = {}) {
    const call = this.backend.GenerateStream(generateRequest(model, input, options), this.metadata(),
      this.callOptions());
    const result = {
      final: null,
      cancel: () => call.cancel(),
      async *[Symbol.asyncIterator]() {
        try {
          for await (const message of call) {
            if (message.delta) yield { index: message.delta.index, text: message.delta.text };
            else if (message.final) result.final = generation(message.final);
          }
        } catch (error) {
          throw error.code !== undefined ? new ForgewayError(error) : error;
        }
        return result.final;
      },
    };
    return result;
  }

  close() {
    this.backend.close();
  }
}

module.exports = { ForgewayClient, ForgewayError, loadContract, generateRequest };
