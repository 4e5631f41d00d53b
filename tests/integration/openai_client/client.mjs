// Drives orchestratord's OpenAI facade with the official openai client and prints what it got,
// one JSON document, for test_openai.py to check. Usage: node client.mjs BASE_URL API_KEY MODEL
import OpenAI from "openai";

const [baseURL, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30000 });
const out = {};

out.models = (await client.models.list()).data.map((m) => m.id);

const completion = await client.completions.create({
  model, prompt: "Once upon a time", max_tokens: 12, temperature: 0, seed: 5,
});
out.completion = { text: completion.choices[0].text, finish: completion.choices[0].finish_reason,
                   object: completion.object, usage: completion.usage };

let streamed = "";
let chunks = 0;
let streamFinish = null;
const stream = await client.completions.create({
  model, prompt: "Once upon a time", max_tokens: 12, temperature: 0, seed: 5, stream: true,
});
for await (const chunk of stream) {
  chunks += 1;
  streamed += chunk.choices[0].text;
  if (chunk.choices[0].finish_reason) streamFinish = chunk.choices[0].finish_reason;
}
out.stream = { text: streamed, chunks, finish: streamFinish };

const chat = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "Hello" }], max_tokens: 8, temperature: 0,
});
out.chat = { content: chat.choices[0].message.content, role: chat.choices[0].message.role,
             finish: chat.choices[0].finish_reason, object: chat.object };

let chatStreamed = "";
let role = null;
const chatStream = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "Hello" }], max_tokens: 8, temperature: 0,
  stream: true,
});
for await (const chunk of chatStream) {
  if (chunk.choices[0].delta.role) role = chunk.choices[0].delta.role;
  chatStreamed += chunk.choices[0].delta.content ?? "";
}
out.chat_stream = { content: chatStreamed, role };

try {
  await client.completions.create({ model: "no-such-model", prompt: "x", max_tokens: 1 });
  out.unknown_model = "no error";
} catch (err) {
  out.unknown_model = err.status;
}
console.log(JSON.stringify(out));
