'use strict';
// Runs against a real gateway (FORGEWAY_TARGET) in front of an echo backend serving FORGEWAY_TEST_MODEL;
// tests/integration/test_node_client.py starts both and runs `npm test`.

const assert = require('node:assert/strict');
const { test, after } = require('node:test');
const { ForgewayClient, ForgewayError } = require('../src/index.js');

const target = process.env.FORGEWAY_TARGET;
const model = process.env.FORGEWAY_TEST_MODEL || 'echo';
const skip = target ? false : 'FORGEWAY_TARGET is not set (run through tests/integration/test_node_client.py)';
const client = target ? new ForgewayClient(target, { timeoutMs: 20000 }) : null;
after(() => client && client.close());

test('capabilities: the gateway is available and lists the echo model and its backend', { skip }, async () => {
  const caps = await client.capabilities();
  assert.equal(caps.backend, 'gateway');
  assert.equal(caps.available, true);
  assert.ok(caps.models.some((m) => m.name === model && m.task === 'text-generation'), JSON.stringify(caps.models));
  assert.ok(caps.endpoints.some((e) => e.backend === 'echo' && e.health === 'SERVING'), JSON.stringify(caps.endpoints));
  assert.ok(caps.rpcs.includes('forgeway.v1.BackendService/GenerateStream'));
});

test('generate: echo returns the prompt, cut at maxTokens, with usage', { skip }, async () => {
  const result = await client.generate(model, 'one two three four', { maxTokens: 2 });
  assert.equal(result.text, 'one two');
  assert.equal(result.choices[0].finishReason, 'length');
  assert.equal(result.usage.completionTokens, 2);
  assert.match(result.servedBy, /^echo\//);
});

test('chat: the reply to the last user message', { skip }, async () => {
  const result = await client.chat(model, [{ role: 'user', content: 'hello from node' }]);
  assert.equal(result.text, 'hello from node');
  assert.equal(result.choices[0].finishReason, 'stop');
});

test('stream: deltas in order, then the final response', { skip }, async () => {
  const stream = client.stream(model, 'alpha beta gamma', { stop: [' gamma'] });
  const pieces = [];
  for await (const delta of stream) pieces.push(delta.text);
  assert.ok(pieces.length >= 2, `expected several deltas, got ${JSON.stringify(pieces)}`);
  assert.equal(pieces.join(''), 'alpha beta');
  assert.equal(stream.final.text, 'alpha beta');
  assert.equal(stream.final.choices[0].finishReason, 'stop_sequence');
});

test('errors: an unknown model is NOT_FOUND, a bad field INVALID_ARGUMENT', { skip }, async () => {
  await assert.rejects(client.generate('no-such-model', 'x'), (error) => {
    assert.ok(error instanceof ForgewayError);
    assert.equal(error.codeName, 'NOT_FOUND');
    assert.match(error.message, /no-such-model/);
    return true;
  });
  await assert.rejects(client.generate(model, 'x', { temperature: 7 }), (error) => error.codeName === 'INVALID_ARGUMENT');
  const stream = client.stream('no-such-model', 'x');
  await assert.rejects((async () => { for await (const _ of stream); })(), (error) => error.codeName === 'NOT_FOUND');
});
