'use strict';
// Runs against a real gateway (FORGEWAY_TARGET) in front of an echo backend serving FORGEWAY_TEST_MODEL and its
// embedding and rerank models (echo-embed: 32 dimensions, Matryoshka 8 and 16; echo-rerank);
// tests/integration/test_node_client.py starts both and runs `npm test`.

const assert = require('node:assert/strict');
const { test, after } = require('node:test');
const { ForgewayClient, ForgewayError } = require('../src/index.js');

const target = process.env.FORGEWAY_TARGET;
const model = process.env.FORGEWAY_TEST_MODEL || 'echo';
const embedModel = 'echo-embed';
const rerankModel = 'echo-rerank';
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

test('embed: vectors in input order, token ids, Matryoshka cuts, errors naming the field', { skip }, async () => {
  const caps = await client.capabilities();
  const info = caps.models.find((m) => m.name === embedModel);
  assert.deepEqual([info.task, info.dimensions, info.matryoshkaDimensions], ['embedding', 32, [8, 16]]);
  const result = await client.embed(embedModel, ['the cat sat', 'dog', 'the cat sat']);
  assert.deepEqual(result.embeddings.map((e) => [e.index, e.tokens, e.truncated]),
    [[0, 3, false], [1, 1, false], [2, 3, false]]);
  assert.equal(result.dimensions, 32);
  assert.deepEqual(result.vectors[0], result.vectors[2]);
  assert.ok(Math.abs(Math.hypot(...result.vectors[0]) - 1) < 1e-6, 'normalized by default');
  assert.equal(result.usage.promptTokens, 7);
  assert.match(result.servedBy, /^echo\//);
  const raw = await client.embed(embedModel, 'the cat sat', { normalize: false });
  const short = await client.embed(embedModel, 'the cat sat', { normalize: false, dimensions: 8 });
  assert.equal(short.dimensions, 8);
  assert.deepEqual(short.vectors[0], raw.vectors[0].slice(0, 8));
  assert.equal((await client.embed(embedModel, [[5, 6, 7]])).embeddings[0].tokens, 3);
  await assert.rejects(client.embed(embedModel, 'x', { dimensions: 12 }),
    (error) => error.codeName === 'INVALID_ARGUMENT' && /dimensions/.test(error.message));
  await assert.rejects(client.embed(embedModel, []),
    (error) => error.codeName === 'INVALID_ARGUMENT' && /^input/.test(error.message));
});

test('rerank: documents by relevance, cut to topN, with their texts', { skip }, async () => {
  const documents = ['a dog runs', 'the cat sat', 'cat and cat'];
  const all = await client.rerank(rerankModel, 'cat', documents);
  assert.deepEqual(all.results.map((r) => r.index), [2, 1, 0]);
  assert.ok(all.results[0].relevanceScore > all.results[1].relevanceScore);
  assert.ok(all.results.every((r) => r.document === ''));
  const best = await client.rerank(rerankModel, 'cat', documents, { topN: 2, returnDocuments: true });
  assert.deepEqual(best.results.map((r) => [r.index, r.document]), [[2, 'cat and cat'], [1, 'the cat sat']]);
  assert.ok(best.usage.promptTokens > 0);
  await assert.rejects(client.rerank(rerankModel, 'cat', documents, { topN: 0 }),
    (error) => error.codeName === 'INVALID_ARGUMENT' && /top_n/.test(error.message));
});
