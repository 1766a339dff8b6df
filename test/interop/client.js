#!/usr/bin/env node
// Sends one Clarifai V2 request to a loopback gRPC endpoint with the official
// Clarifai Node client (npm clarifai-nodejs-grpc) and prints the outcome.
//
// stdin, one JSON object:
//   {"address": "127.0.0.1:PORT", "key": "...", "rpc": "PostCollectors",
//    "request": {...proto3 JSON, snake_case or lowerCamel names...},
//    "metadata": {"x-request-id": "..."}}
// A missing or empty "key" sends no authorization header.
//
// stdout, one JSON line:
//   {"grpc_code": 0, "grpc_details": "", "response": {...proto3 JSON, snake_case names...}}
// "response" is null unless grpc_code is 0.
//
// Exit status 0 means the call completed, whatever its gRPC code. Exit status 2
// means the input was invalid (the reason is on stderr) and nothing was sent.
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protobuf = require('protobufjs');
const { V2Client } = require('clarifai-nodejs-grpc/proto/clarifai/api/service_grpc_pb');
const protojson = require('./protojson');

const { InputError } = protojson;

// The RPCs the harness may call: collectord's API, its predict path and GetUser.
const ALLOWED_RPCS = new Set([
  'PostModelOutputs',
  'PostCollectors', 'GetCollector', 'ListCollectors', 'PatchCollectors', 'DeleteCollectors',
  'PostApps', 'GetApp', 'ListApps',
  'PostInputs', 'GetInput', 'ListInputs', 'DeleteInputs',
  'GetUser',
  'PostWorkflows', 'GetWorkflow', 'ListWorkflows', 'PatchWorkflows', 'DeleteWorkflows',
]);

const CALL_DEADLINE_MS = 10000;

// A backstop in case the call outlives its deadline, so a test never waits forever.
const PROCESS_TIMEOUT_MS = CALL_DEADLINE_MS + 5000;

// The official ClarifaiStub sets these limits on its channel, so the harness sets them too.
const CHANNEL_OPTIONS = {
  'grpc.max_receive_message_length': 1024 * 1024 * 1024,
  'grpc.max_send_message_length': 1024 * 1024 * 1024,
};

const PACKAGE_ROOT = path.join(__dirname, 'node_modules', 'clarifai-nodejs-grpc');

// Loads the client's own .proto files for field types, because the generated
// google-protobuf classes carry no runtime descriptors.
function parseSchema() {
  const root = new protobuf.Root();
  root.addJSON(require('protobufjs/google/protobuf/descriptor.json').nested);
  root.resolvePath = (origin, target) => {
    // protobufjs bundles the google.protobuf well-known types under these names.
    if (target.startsWith('google/protobuf/')) {
      return target;
    }
    return path.join(PACKAGE_ROOT, target);
  };

  // Types are resolved field by field as the converters reach them, because
  // resolving the whole Clarifai schema up front takes seconds.
  root.loadSync(['proto/clarifai/api/service.proto'], { keepCase: true });
  return root;
}

// Returns the schema of the installed client. The parsed schema is cached as
// JSON under node_modules/.cache, because reading that JSON takes about a
// third of the time of parsing the .proto files again.
function loadSchema() {
  const { version } = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8'));
  const cacheFile = path.join(__dirname, 'node_modules', '.cache', 'collectord-interop', `clarifai-schema-${version}.json`);
  try {
    return protobuf.Root.fromJSON(JSON.parse(fs.readFileSync(cacheFile, 'utf8')));
  } catch (err) {
    // A missing or unreadable cache is rebuilt below.
  }

  const root = parseSchema();
  try {
    // Concurrent clients may rebuild the cache at once; each renames a
    // complete file into place, so readers never see a partial one.
    fs.mkdirSync(path.dirname(cacheFile), { recursive: true });
    const tempFile = `${cacheFile}.${process.pid}.tmp`;
    fs.writeFileSync(tempFile, JSON.stringify(root.toJSON()));
    fs.renameSync(tempFile, cacheFile);
  } catch (err) {
    process.stderr.write(`interop client: schema cache not written: ${err.message}\n`);
  }
  return root;
}

// Returns the generated class of a message type. The generated modules
// register every class under the global "proto" namespace.
function messageClass(type) {
  let scope = globalThis.proto;
  for (const part of type.fullName.replace(/^\./, '').split('.')) {
    scope = scope && scope[part];
  }
  if (typeof scope !== 'function') {
    throw new Error(`no generated class for ${type.fullName}`);
  }
  return scope;
}

// Converts a proto field name to the suffix of its generated accessors, the
// way protoc's JavaScript generator does: "user_app_id" becomes "UserAppId".
function accessorSuffix(fieldName) {
  return fieldName
    .toLowerCase()
    .split('_')
    .filter((word) => word !== '')
    .map((word) => word[0].toUpperCase() + word.slice(1))
    .join('');
}

// Returns the message or enum type of a field, or null for a scalar field.
function resolvedType(field) {
  return field.resolve().resolvedType;
}

function findField(type, key) {
  if (Object.prototype.hasOwnProperty.call(type.fields, key)) {
    return type.fields[key];
  }
  return type.fieldsArray.find((field) => protojson.lowerCamel(field.name) === key);
}

function callAccessor(msg, name, where, ...args) {
  if (typeof msg[name] !== 'function') {
    throw new Error(`${where}: generated class has no ${name}()`);
  }
  return msg[name](...args);
}

// Builds an instance of the generated class of type from proto3 JSON.
function messageFromJson(type, json, where) {
  const wellKnown = protojson.fromJson(type, json, where, messageClass(type));
  if (wellKnown !== undefined) {
    return wellKnown;
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new InputError(`${where}: expected a JSON object for ${type.fullName}`);
  }

  const msg = new (messageClass(type))();
  for (const [key, value] of Object.entries(json)) {
    const field = findField(type, key);
    if (!field) {
      throw new InputError(`${where}: unknown field "${key}" in ${type.fullName}`);
    }
    setField(msg, field, value, `${where}.${field.name}`);
  }
  return msg;
}

function setField(msg, field, value, where) {
  const suffix = accessorSuffix(field.name);

  // In proto3 JSON, null means "default", except for google.protobuf.Value.
  const resolved = resolvedType(field);
  if (value === null && !(resolved && resolved.fullName === '.google.protobuf.Value')) {
    return;
  }

  if (field.map) {
    if (typeof value !== 'object' || Array.isArray(value)) {
      throw new InputError(`${where}: expected a JSON object for a map field`);
    }
    const map = callAccessor(msg, `get${suffix}Map`, where);
    for (const [key, item] of Object.entries(value)) {
      map.set(mapKeyFromJson(field.keyType, key, where), valueFromJson(field, item, `${where}[${key}]`));
    }
    return;
  }

  if (field.repeated) {
    if (!Array.isArray(value)) {
      throw new InputError(`${where}: expected a JSON array for a repeated field`);
    }
    const items = value.map((item, i) => valueFromJson(field, item, `${where}[${i}]`));
    callAccessor(msg, `set${suffix}List`, where, items);
    return;
  }

  callAccessor(msg, `set${suffix}`, where, valueFromJson(field, value, where));
}

function mapKeyFromJson(keyType, key, where) {
  if (keyType === 'string') {
    return key;
  }
  if (keyType === 'bool') {
    return key === 'true';
  }
  return protojson.scalarFromJson(keyType, key, where);
}

function valueFromJson(field, value, where) {
  const resolved = resolvedType(field);
  if (resolved instanceof protobuf.Enum) {
    return enumFromJson(resolved, value, where);
  }
  if (resolved instanceof protobuf.Type) {
    return messageFromJson(resolved, value, where);
  }
  return protojson.scalarFromJson(field.type, value, where, field.options);
}

function enumFromJson(enumType, value, where) {
  if (typeof value === 'number' && Number.isInteger(value)) {
    return value;
  }
  if (typeof value === 'string' && Object.prototype.hasOwnProperty.call(enumType.values, value)) {
    return enumType.values[value];
  }
  throw new InputError(`${where}: ${JSON.stringify(value)} is not a value of ${enumType.fullName}`);
}

// Converts an instance of a generated class to proto3 JSON with the proto
// field names. Fields at their default value are left out, as in proto3 JSON.
function messageToJson(type, msg) {
  const wellKnown = protojson.toJson(type, msg);
  if (wellKnown !== undefined) {
    return wellKnown;
  }

  const json = {};
  for (const field of type.fieldsArray) {
    const value = fieldToJson(msg, field);
    if (value !== undefined) {
      json[field.name] = value;
    }
  }
  return json;
}

function fieldToJson(msg, field) {
  const suffix = accessorSuffix(field.name);

  if (field.map) {
    const map = msg[`get${suffix}Map`]();
    if (map.getLength() === 0) {
      return undefined;
    }
    const json = {};
    map.forEach((item, key) => {
      json[String(key)] = valueToJson(field, item);
    });
    return json;
  }

  if (field.repeated) {
    const items = field.type === 'bytes' ? msg[`get${suffix}List_asB64`]() : msg[`get${suffix}List`]();
    if (items.length === 0) {
      return undefined;
    }
    return items.map((item) => valueToJson(field, item));
  }

  // Message fields and members of a oneof have presence: emit them when set,
  // even at their default value.
  const hasPresence = field.partOf || resolvedType(field) instanceof protobuf.Type;
  if (hasPresence && typeof msg[`has${suffix}`] === 'function') {
    return msg[`has${suffix}`]() ? valueToJson(field, msg[`get${suffix}`]()) : undefined;
  }

  const value = field.type === 'bytes' ? msg[`get${suffix}_asB64`]() : msg[`get${suffix}`]();
  if (protojson.isDefault(field.type, value)) {
    return undefined;
  }
  return valueToJson(field, value);
}

function valueToJson(field, value) {
  const resolved = resolvedType(field);
  if (resolved instanceof protobuf.Enum) {
    // Aliased values (deprecated names sharing a number) map to the first
    // declared name, as protoc does; protobufjs's valuesById keeps the last.
    // An enum value unknown to this client stays a number, as in proto3 JSON.
    for (const [name, number] of Object.entries(resolved.values)) {
      if (number === value) {
        return name;
      }
    }
    return value;
  }
  if (resolved instanceof protobuf.Type) {
    return messageToJson(resolved, value);
  }
  if (field.type === 'bytes' && value instanceof Uint8Array) {
    return Buffer.from(value).toString('base64');
  }
  return protojson.scalarToJson(field.type, value);
}

function checkLoopback(address) {
  if (typeof address !== 'string') {
    throw new InputError('"address" must be a string such as "127.0.0.1:PORT"');
  }
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(address);
  if (!match) {
    throw new InputError(`invalid address "${address}": expected HOST:PORT`);
  }
  const host = match[1] || match[2];
  if (!(host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host))) {
    throw new InputError(`address "${address}" is not a loopback address. The interop client only calls 127.0.0.1, ::1 or localhost`);
  }
}

function buildMetadata(input) {
  const metadata = new grpc.Metadata();
  if (input.key !== undefined && input.key !== null && input.key !== '') {
    if (typeof input.key !== 'string') {
      throw new InputError('"key" must be a string');
    }
    metadata.set('authorization', `Key ${input.key}`);
  }
  for (const [name, value] of Object.entries(input.metadata || {})) {
    if (typeof value !== 'string') {
      throw new InputError(`metadata "${name}" must be a string`);
    }
    // Binary headers travel as base64 in the JSON input.
    metadata.set(name, name.endsWith('-bin') ? Buffer.from(value, 'base64') : value);
  }
  return metadata;
}

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on('data', (chunk) => chunks.push(chunk));
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    process.stdin.on('error', reject);
  });
}

function parseInput(text) {
  let input;
  try {
    input = JSON.parse(text);
  } catch (err) {
    throw new InputError(`stdin is not valid JSON: ${err.message}`);
  }
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new InputError('stdin must contain one JSON object');
  }
  if (!ALLOWED_RPCS.has(input.rpc)) {
    throw new InputError(`unsupported rpc ${JSON.stringify(input.rpc)}. Supported RPCs: ${[...ALLOWED_RPCS].join(', ')}`);
  }
  checkLoopback(input.address);
  return input;
}

// Sends the request and resolves to the output line, whatever the gRPC code.
function invoke(client, method, request, metadata, responseType) {
  const methodName = method.name[0].toLowerCase() + method.name.slice(1);
  const options = { deadline: Date.now() + CALL_DEADLINE_MS };
  return new Promise((resolve) => {
    client[methodName](request, metadata, options, (err, response) => {
      if (err) {
        resolve({ grpc_code: err.code, grpc_details: err.details || '', response: null });
        return;
      }
      resolve({ grpc_code: grpc.status.OK, grpc_details: '', response: messageToJson(responseType, response) });
    });
  });
}

async function main() {
  const input = parseInput(await readStdin());

  const schema = loadSchema();
  const method = schema.lookupService('clarifai.api.V2').methods[input.rpc];
  const requestType = schema.lookupType(method.requestType);
  const responseType = schema.lookupType(method.responseType);
  const request = messageFromJson(requestType, input.request || {}, 'request');
  const metadata = buildMetadata(input);

  const client = new V2Client(input.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
  try {
    const output = await invoke(client, method, request, metadata, responseType);
    process.stdout.write(`${JSON.stringify(output)}\n`);
  } finally {
    client.close();
  }
}

setTimeout(() => {
  process.stderr.write(`interop client: no result after ${PROCESS_TIMEOUT_MS} ms, exiting\n`);
  process.exit(3);
}, PROCESS_TIMEOUT_MS).unref();

main().catch((err) => {
  if (err instanceof InputError) {
    process.stderr.write(`interop client: invalid input: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`interop client: ${err.stack || err}\n`);
  process.exit(1);
});
