'use strict';
// Lamina's Node.js runtime bootstrap: a stdlib-only Lambda Runtime API client (CommonJS, Node 20).
//
// Run as `node /var/runtime/bootstrap.js` inside the sandbox. Reads AWS_LAMBDA_RUNTIME_API
// (host:port), _HANDLER (`path/file.func`) and LAMBDA_TASK_ROOT (default /var/task), loads the
// handler once (`.js`, `.cjs`, or `.mjs` through a dynamic import), then loops: GET next, run the
// handler (async, promise-returning or callback style), POST the response or the error. Error shapes,
// messages and log lines follow AWS's Node runtime (aws-lambda-nodejs-runtime-interface-client).

const fs = require('fs');
const http = require('http');
const path = require('path');
const util = require('util');
const { pathToFileURL } = require('url');

const API_PREFIX = '/2018-06-01/runtime';
const ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type';
const ERROR_BODY_HEADER = 'Lambda-Runtime-Function-Error-Body';
const { Writable } = require('stream');

// ---------------------------------------------------------------------------------------------
// Logging: console.* lines formatted like Lambda, written synchronously (stdout is a pipe or a file,
// both synchronous on Linux) so that they precede the POST that ends the invocation.

let currentRequestId; // printed as `undefined` outside an invocation, like Lambda

function writeLog(level, args) {
  const line = `${new Date().toISOString()}\t${currentRequestId}\t${level}\t${util.format(...args)}`;
  // One log line per message, as Lambda does: inner newlines become carriage returns.
  process.stdout.write(line.replace(/\n/g, '\r') + '\n');
}

console.log = (...args) => writeLog('INFO', args);
console.info = (...args) => writeLog('INFO', args);
console.warn = (...args) => writeLog('WARN', args);
console.error = (...args) => writeLog('ERROR', args);
console.debug = (...args) => writeLog('DEBUG', args);
console.trace = (...args) => writeLog('TRACE', args);
console.fatal = (...args) => writeLog('FATAL', args);

// ---------------------------------------------------------------------------------------------
// Runtime API client: one keep-alive connection.

const apiAddress = process.env.AWS_LAMBDA_RUNTIME_API;
if (!apiAddress) {
  process.stderr.write('AWS_LAMBDA_RUNTIME_API is not set: the runtime api address is required\n');
  process.exit(1);
}
const apiHost = apiAddress.slice(0, apiAddress.lastIndexOf(':')) || '127.0.0.1';
const apiPort = Number(apiAddress.slice(apiAddress.lastIndexOf(':') + 1));
const agent = new http.Agent({ keepAlive: true, maxSockets: 1, noDelay: true });

function apiRequest(method, apiPath, body, headers, retried) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: apiHost, port: apiPort, method, path: API_PREFIX + apiPath, agent, headers: headers || {} },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', (err) => {
      // The server may have closed an idle keep-alive connection: retry once on a fresh one.
      if (!retried && req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
        apiRequest(method, apiPath, body, headers, true).then(resolve, reject);
      } else {
        reject(err);
      }
    });
    req.end(body);
  });
}

async function post(apiPath, body, errorType) {
  const buf = Buffer.from(body, 'utf8');
  const headers = { 'Content-Type': 'application/json', 'Content-Length': buf.length };
  if (errorType) headers[ERROR_TYPE_HEADER] = errorType;
  const res = await apiRequest('POST', apiPath, buf, headers);
  if (res.status !== 202) {
    process.stderr.write(`runtime api answered ${res.status} to POST ${apiPath}: ${res.body.toString('utf8')}\n`);
  }
  return res;
}

// ---------------------------------------------------------------------------------------------
// Errors, shaped like AWS's Node runtime.

class ExtendedError extends Error {
  constructor(name, reason) {
    super(reason === undefined ? undefined : String(reason));
    this.name = name;
    const frames = (reason && typeof reason.stack === 'string' ? reason.stack : this.stack).split('\n').slice(1);
    this.stack = [`${name}: ${this.message}`, ...frames].join('\n');
  }
}
const importModuleError = (e) => new ExtendedError('Runtime.ImportModuleError', e);
const handlerNotFound = (msg) => new ExtendedError('Runtime.HandlerNotFound', msg);
const malformedHandlerName = (msg) => new ExtendedError('Runtime.MalformedHandlerName', msg);
const userCodeSyntaxError = (e) => new ExtendedError('Runtime.UserCodeSyntaxError', e);

function isError(e) {
  return util.types.isNativeError(e) || (e !== null && typeof e === 'object' && typeof e.name === 'string'
    && typeof e.message === 'string' && typeof e.stack === 'string');
}

function toRapidResponse(error) {
  try {
    if (isError(error)) {
      return {
        errorType: error.name,
        errorMessage: error.message,
        trace: error.stack.split('\n'),
      };
    }
    return { errorType: typeof error, errorMessage: String(error), trace: [] };
  } catch (_) {
    return {
      errorType: 'handled',
      errorMessage: 'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
      trace: [],
    };
  }
}

function toFormatted(rapid) {
  return '\t' + JSON.stringify({ errorType: rapid.errorType, errorMessage: rapid.errorMessage, stack: rapid.trace });
}

// ---------------------------------------------------------------------------------------------
// Handler loading.

const FUNCTION_EXPR = /^([^.]*)\.(.*)$/;

function isFile(p) {
  try {
    return fs.statSync(p).isFile();
  } catch (_) {
    return false;
  }
}

async function importFile(file) {
  return import(pathToFileURL(file).href);
}

async function loadModule(file) {
  if (file.endsWith('.mjs')) return importFile(file);
  try {
    return require(file);
  } catch (e) {
    if (e && e.code === 'ERR_REQUIRE_ESM') return importFile(file); // a .js in a "type": "module" package
    throw e;
  }
}

async function requireUserModule(taskRoot, moduleRoot, moduleName) {
  const lambdaStylePath = path.resolve(taskRoot, moduleRoot, moduleName);
  for (const ext of ['', '.js', '.mjs', '.cjs']) {
    if (isFile(lambdaStylePath + ext)) return loadModule(lambdaStylePath + ext);
  }
  // A package (directory or node_modules), resolved like Node does.
  const resolved = require.resolve(moduleName, { paths: [path.resolve(taskRoot, moduleRoot), taskRoot] });
  return loadModule(resolved);
}

async function loadHandler(taskRoot, fullHandler) {
  if (fullHandler.includes('..')) {
    throw malformedHandlerName(`'${fullHandler}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`);
  }
  const handlerString = path.basename(fullHandler);
  const moduleRoot = fullHandler.substring(0, fullHandler.indexOf(handlerString));
  const match = handlerString.match(FUNCTION_EXPR);
  if (!match || match.length !== 3) throw malformedHandlerName('Bad handler');
  const [, moduleName, handlerPath] = match;
  let mod;
  try {
    mod = await requireUserModule(taskRoot, moduleRoot, moduleName);
  } catch (e) {
    if (e instanceof SyntaxError) throw userCodeSyntaxError(e);
    if (e && e.code === 'MODULE_NOT_FOUND') throw importModuleError(e);
    throw e;
  }
  const handler = handlerPath.split('.').reduce((obj, key) => (obj == null ? undefined : obj[key]), mod);
  if (handler === undefined) throw handlerNotFound(`${fullHandler} is undefined or not exported`);
  if (typeof handler !== 'function') throw handlerNotFound(`${fullHandler} is not a function`);
  return handler;
}

// ---------------------------------------------------------------------------------------------
// Invocations.

let inflightId; // the request id whose answer is not posted yet
let crashing = false;

function parseJsonHeader(value) {
  if (!value) return undefined;
  try {
    return JSON.parse(value);
  } catch (_) {
    return undefined;
  }
}

function makeContext(headers) {
  const deadline = Number(headers['lambda-runtime-deadline-ms']) || 0;
  const env = process.env;
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    functionName: env.AWS_LAMBDA_FUNCTION_NAME,
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: parseJsonHeader(headers['lambda-runtime-client-context']),
    identity: parseJsonHeader(headers['lambda-runtime-cognito-identity']),
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    awsRequestId: headers['lambda-runtime-aws-request-id'],
    getRemainingTimeInMillis: () => Math.max(deadline - Date.now(), 0),
  };
}

// Runs the handler; resolves { ok: value } or { err: error }. Callback results wait for the event
// loop to empty when context.callbackWaitsForEmptyEventLoop is true (the default), as in Lambda; a
// handler that neither returns a promise nor calls back answers null once the event loop is empty.
function runHandler(handler, event, context) {
  return new Promise((resolve) => {
    let done = false;
    let pending;
    const finish = (r) => {
      if (done) return;
      done = true;
      process.removeListener('beforeExit', onBeforeExit);
      resolve(r);
    };
    const onBeforeExit = () => finish(pending || { ok: null });
    process.on('beforeExit', onBeforeExit);
    const callback = (err, value) => {
      if (done || pending) return;
      const r = err !== undefined && err !== null ? { err } : { ok: value };
      if (context.callbackWaitsForEmptyEventLoop) pending = r;
      else finish(r);
    };
    context.done = callback;
    context.succeed = (value) => callback(null, value);
    context.fail = (err) => callback(err === undefined || err === null ? 'handled' : err);
    let ret;
    try {
      ret = handler(event, context, callback);
    } catch (e) {
      finish({ err: e });
      return;
    }
    if (ret !== null && ret !== undefined && typeof ret.then === 'function') {
      ret.then((value) => finish({ ok: value }), (e) => finish({ err: e }));
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Response streaming: `awslambda.streamifyResponse(handler)` marks a handler that is called as
// `handler(event, responseStream, context)`; what it writes goes to the Runtime API as a chunked
// body in streaming mode, and an error it throws becomes the error trailers.

const STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
globalThis.awslambda = {
  streamifyResponse(handler) {
    handler[STREAMING] = 'response';
    return handler;
  },
  HttpResponseStream: {
    // Function URL responses: a JSON prelude and 8 NUL bytes before the body.
    from(stream, prelude) {
      stream.setContentType('application/vnd.awslambda.http-integration-response');
      stream.write(JSON.stringify(prelude || {}));
      stream.write(Buffer.alloc(8));
      return stream;
    },
  },
};

async function invokeStreaming(handler, id, event, context) {
  let contentType = 'application/octet-stream';
  const req = http.request({
    host: apiHost, port: apiPort, method: 'POST', path: `${API_PREFIX}/invocation/${id}/response`, agent,
    headers: {
      'Lambda-Runtime-Function-Response-Mode': 'streaming',
      'Transfer-Encoding': 'chunked',
      Trailer: `${ERROR_TYPE_HEADER}, ${ERROR_BODY_HEADER}`,
    },
  });
  const answered = new Promise((resolve, reject) => {
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
  });
  const typed = () => {
    if (!req.headersSent) req.setHeader('Content-Type', contentType);
  };
  const stream = new Writable({
    write(chunk, encoding, callback) {
      typed();
      req.write(chunk, callback);
    },
  });
  stream.setContentType = (type) => {
    contentType = String(type);
  };
  let failure;
  try {
    await handler(event, stream, context);
    if (!stream.writableFinished) await new Promise((resolve) => stream.end(resolve));
  } catch (e) {
    failure = e;
  }
  typed();
  if (failure !== undefined) {
    const rapid = toRapidResponse(failure);
    console.error('Invoke Error', toFormatted(rapid));
    req.addTrailers({
      [ERROR_TYPE_HEADER]: rapid.errorType,
      [ERROR_BODY_HEADER]: Buffer.from(JSON.stringify(rapid)).toString('base64'),
    });
  }
  req.end();
  const status = await answered;
  if (status !== 202) process.stderr.write(`runtime api answered ${status} to a streamed response\n`);
}

async function postError(id, rapid, label) {
  console.error(label, toFormatted(rapid));
  await post(`/invocation/${id}/error`, JSON.stringify(rapid), rapid.errorType);
}

async function invokeOnce(handler, res) {
  if (res.status !== 200) throw new Error(`runtime api answered ${res.status} to next: ${res.body.toString('utf8')}`);
  const headers = res.headers;
  const id = headers['lambda-runtime-aws-request-id'];
  currentRequestId = id;
  inflightId = id;
  if (headers['lambda-runtime-trace-id']) process.env._X_AMZN_TRACE_ID = headers['lambda-runtime-trace-id'];
  else delete process.env._X_AMZN_TRACE_ID;
  const context = makeContext(headers);
  let event;
  try {
    event = JSON.parse(res.body.toString('utf8'));
  } catch (e) {
    await postError(id, { errorType: 'Runtime.UnmarshalError', errorMessage: `Unable to unmarshal input: ${e.message}`, trace: [] }, 'Invoke Error');
    inflightId = undefined;
    return;
  }
  if (handler[STREAMING] === 'response') {
    await invokeStreaming(handler, id, event, context);
    inflightId = undefined;
    return;
  }
  const result = await runHandler(handler, event, context);
  if (crashing) return;
  if ('err' in result) {
    await postError(id, toRapidResponse(result.err), 'Invoke Error');
  } else {
    let body;
    try {
      body = JSON.stringify(result.ok === undefined ? null : result.ok);
    } catch (e) {
      await postError(id, { errorType: 'Runtime.MarshalError', errorMessage: `Unable to stringify response body: ${e.message}`, trace: [] }, 'Invoke Error');
      inflightId = undefined;
      return;
    }
    await post(`/invocation/${id}/response`, body);
  }
  inflightId = undefined;
}

// Uncaught errors: during an invocation they fail it, during init they fail the init; then the
// process exits (the worker discards the sandbox), as in Lambda.
async function crash(rapid, exitCode) {
  if (crashing) return;
  crashing = true;
  console.error('Uncaught Exception', toFormatted(rapid));
  try {
    if (inflightId !== undefined) await post(`/invocation/${inflightId}/error`, JSON.stringify(rapid), rapid.errorType);
    else if (!initDone) await post('/init/error', JSON.stringify(rapid), rapid.errorType);
  } finally {
    process.exit(exitCode);
  }
}

let initDone = false;

process.on('uncaughtException', (err) => {
  crash(toRapidResponse(err), 129);
});
process.on('unhandledRejection', (reason) => {
  const err = new ExtendedError('Runtime.UnhandledPromiseRejection', isError(reason) ? reason : String(reason));
  crash(toRapidResponse(err), 128);
});

async function main() {
  const taskRoot = process.env.LAMBDA_TASK_ROOT || '/var/task';
  try {
    process.chdir(taskRoot);
  } catch (_) {
    // keep the current directory
  }
  let handler;
  try {
    handler = await loadHandler(taskRoot, process.env._HANDLER || '');
  } catch (e) {
    const rapid = toRapidResponse(e);
    crashing = true;
    console.error('Uncaught Exception', toFormatted(rapid));
    await post('/init/error', JSON.stringify(rapid), rapid.errorType);
    process.exit(1);
  }
  initDone = true;
  for (;;) {
    const res = await apiRequest('GET', '/invocation/next');
    await invokeOnce(handler, res);
  }
}

main().catch((e) => {
  process.stderr.write(`lamina bootstrap failed: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
