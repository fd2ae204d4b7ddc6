'use strict';
// Tool calling through a real gateway (FORGEWAY_TARGET) in front of an hf backend serving the tiny Llama as
// FORGEWAY_TOOLS_MODEL; tests/integration/test_node_client.py starts both and runs this file. The request-building
// test needs no server.

const assert = require('node:assert/strict');
const { test, after } = require('node:test');
const { ForgewayClient, generateRequest } = require('../src/index.js');

const target = process.env.FORGEWAY_TARGET;
const model = process.env.FORGEWAY_TOOLS_MODEL;
const skip = target && model ? false : 'FORGEWAY_TARGET and FORGEWAY_TOOLS_MODEL are not set (run through '
  + 'tests/integration/test_node_client.py)';
const client = target && model ? new ForgewayClient(target, { timeoutMs: 120000 }) : null;
after(() => client && client.close());

const WEATHER = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Get the current weather in a city.',
    parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 12 } }, required: ['city'] },
  },
};
const QUESTION = [{ role: 'user', content: 'What is the weather in Paris?' }];

test('requests carry tools, tool_choice, the switches, and messages with tool calls', () => {
  const request = generateRequest('m', {
    messages: [...QUESTION,
      { role: 'assistant', content: null, tool_calls: [
        { id: 'c1', type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris' } } }] },
      { role: 'tool', tool_call_id: 'c1', content: 'sunny' }],
  }, { tools: [WEATHER], toolChoice: 'get_weather', parallelToolCalls: false, thinking: true });
  assert.deepEqual(request.tools[0].function.name, 'get_weather');
  assert.deepEqual(JSON.parse(request.tools[0].function.parameters), WEATHER.function.parameters);
  assert.deepEqual(request.toolChoice, { mode: 'TOOL_CHOICE_MODE_FUNCTION', function: 'get_weather' });
  const required = generateRequest('m', 'x', { toolChoice: 'required' });
  assert.deepEqual(required.toolChoice, { mode: 'TOOL_CHOICE_MODE_REQUIRED' });
  assert.equal(request.parallelToolCalls, false);
  assert.equal(request.thinking, true);
  assert.deepEqual(request.messages[1].toolCalls, [{ id: 'c1', name: 'get_weather', arguments: '{"city":"Paris"}' }]);
  assert.equal(request.messages[2].toolCallId, 'c1');
  assert.throws(() => generateRequest('m', 'x', { tools: [{ type: 'retrieval' }] }), /only function tools/);
});

test('a forced call comes back as a tool call; its result continues the chat', { skip }, async () => {
  const first = await client.chat(model, QUESTION, { tools: [WEATHER], toolChoice: 'get_weather', maxTokens: 128 });
  assert.equal(first.choices[0].finishReason, 'tool_calls', JSON.stringify(first));
  const call = first.toolCalls[0];
  assert.equal(call.name, 'get_weather');
  assert.ok(call.id);
  assert.equal(typeof call.args.city, 'string');
  assert.deepEqual(first.message.tool_calls[0].function, { name: 'get_weather', arguments: call.arguments });
  const messages = [...QUESTION, first.message, { role: 'tool', tool_call_id: call.id, content: 'sunny, 21 C' }];
  const second = await client.chat(model, messages, { tools: [WEATHER], toolChoice: 'none', maxTokens: 16 });
  assert.ok(['stop', 'length'].includes(second.choices[0].finishReason), JSON.stringify(second));
  assert.deepEqual(second.toolCalls, []);
});

test('stream: the tool-call pieces add up to the final calls', { skip }, async () => {
  const options = { tools: [WEATHER], toolChoice: 'get_weather', maxTokens: 128 };
  const stream = client.stream(model, { messages: QUESTION }, options);
  let pieces = 0;
  for await (const delta of stream) pieces += delta.toolCalls.length;
  assert.ok(pieces >= 1);
  assert.equal(stream.final.choices[0].finishReason, 'tool_calls');
  assert.deepEqual(stream.toolCalls(), stream.final.toolCalls);
  assert.equal(stream.toolCalls()[0].name, 'get_weather');
});
