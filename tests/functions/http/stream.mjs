// A response-streaming function for a RESPONSE_STREAM function URL: status and headers in the
// prelude written by awslambda.HttpResponseStream.from, a first chunk at once, then after a pause a
// last chunk that carries the time (epoch ms) at which the function wrote it, so that the client
// can show it received the first chunk well before (tests/tests/http_gateway.rs).
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export const handler = awslambda.streamifyResponse(async (event, responseStream, _context) => {
  const pause = Number((event.queryStringParameters || {}).pause || 1500);
  const stream = awslambda.HttpResponseStream.from(responseStream, {
    statusCode: 201,
    headers: { 'Content-Type': 'text/plain', 'X-Streamed': 'yes' },
  });
  stream.write(`first chunk for ${event.rawPath}\n`);
  await sleep(pause);
  stream.write(`last chunk written at ${Date.now()}\n`);
  stream.end();
});
