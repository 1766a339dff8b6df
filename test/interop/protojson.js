// Proto3 JSON conversion of scalars and of the google.protobuf well-known
// types, between JSON values and google-protobuf generated messages. Follows
// the proto3 JSON mapping: 64-bit integers as strings, bytes as base64,
// Timestamp as RFC 3339, Duration as "1.5s", wrappers as their bare value.
'use strict';

// InputError marks a request that cannot be converted, so nothing is sent.
class InputError extends Error {}

const INT32_TYPES = new Set(['int32', 'sint32', 'sfixed32', 'uint32', 'fixed32']);
const INT64_TYPES = new Set(['int64', 'sint64', 'sfixed64', 'uint64', 'fixed64']);
const FLOAT_TYPES = new Set(['float', 'double']);

const WRAPPER_SCALARS = {
  '.google.protobuf.DoubleValue': 'double',
  '.google.protobuf.FloatValue': 'float',
  '.google.protobuf.Int64Value': 'int64',
  '.google.protobuf.UInt64Value': 'uint64',
  '.google.protobuf.Int32Value': 'int32',
  '.google.protobuf.UInt32Value': 'uint32',
  '.google.protobuf.BoolValue': 'bool',
  '.google.protobuf.StringValue': 'string',
  '.google.protobuf.BytesValue': 'bytes',
};

// Returns the JSON name protoc derives from a field name: "user_app_id" becomes "userAppId".
function lowerCamel(name) {
  return name.replace(/_+([a-z0-9])/g, (_, letter) => letter.toUpperCase());
}

function snakeCase(name) {
  return name.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}

function integerFromJson(value, where) {
  const number = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof number !== 'number' || !Number.isInteger(number)) {
    throw new InputError(`${where}: expected an integer, got ${JSON.stringify(value)}`);
  }
  return number;
}

function floatFromJson(value, where) {
  if (value === 'NaN') {
    return NaN;
  }
  if (value === 'Infinity') {
    return Infinity;
  }
  if (value === '-Infinity') {
    return -Infinity;
  }
  const number = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof number !== 'number' || Number.isNaN(number)) {
    throw new InputError(`${where}: expected a number, got ${JSON.stringify(value)}`);
  }
  return number;
}

function bytesFromJson(value, where) {
  // Proto3 JSON accepts both the standard and the URL-safe base64 alphabets.
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(value)) {
    throw new InputError(`${where}: expected a base64 string`);
  }
  return new Uint8Array(Buffer.from(value, value.includes('-') || value.includes('_') ? 'base64url' : 'base64'));
}

// Converts a JSON value to what the generated setter of a scalar field takes.
// A 64-bit integer becomes a number unless the field sets jstype = JS_STRING.
function scalarFromJson(type, value, where, options) {
  if (type === 'string') {
    if (typeof value !== 'string') {
      throw new InputError(`${where}: expected a string`);
    }
    return value;
  }
  if (type === 'bool') {
    if (typeof value !== 'boolean') {
      throw new InputError(`${where}: expected true or false`);
    }
    return value;
  }
  if (type === 'bytes') {
    return bytesFromJson(value, where);
  }
  if (INT32_TYPES.has(type)) {
    return integerFromJson(value, where);
  }
  if (INT64_TYPES.has(type)) {
    const number = integerFromJson(value, where);
    return options && options.jstype === 'JS_STRING' ? String(value) : number;
  }
  if (FLOAT_TYPES.has(type)) {
    return floatFromJson(value, where);
  }
  throw new InputError(`${where}: unsupported field type ${type}`);
}

function scalarToJson(type, value) {
  if (INT64_TYPES.has(type)) {
    return String(value);
  }
  if (FLOAT_TYPES.has(type) && !Number.isFinite(value)) {
    return String(value);
  }
  return value;
}

// Reports whether a scalar is at its proto3 default, which proto3 JSON leaves out.
// A 64-bit integer field with jstype = JS_STRING reads as the string "0".
function isDefault(type, value) {
  if (INT64_TYPES.has(type)) {
    return Number(value) === 0;
  }
  return value === undefined || value === null || value === 0 || value === '' || value === false;
}

function parseTimestamp(value, where) {
  const match = typeof value === 'string'
    && /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/i.exec(value);
  const millis = match ? Date.parse(`${match[1]}${match[3].toUpperCase()}`) : NaN;
  if (Number.isNaN(millis)) {
    throw new InputError(`${where}: expected an RFC 3339 timestamp such as "2024-01-02T03:04:05.123Z"`);
  }
  return { seconds: millis / 1000, nanos: Number((match[2] || '').padEnd(9, '0')) };
}

// Formats nanoseconds with 0, 3, 6 or 9 digits, as proto3 JSON printers do.
function fraction(nanos) {
  if (nanos === 0) {
    return '';
  }
  if (nanos % 1e6 === 0) {
    return `.${String(nanos / 1e6).padStart(3, '0')}`;
  }
  if (nanos % 1e3 === 0) {
    return `.${String(nanos / 1e3).padStart(6, '0')}`;
  }
  return `.${String(nanos).padStart(9, '0')}`;
}

function formatTimestamp(seconds, nanos) {
  const base = new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, '');
  return `${base}${fraction(nanos)}Z`;
}

function parseDuration(value, where) {
  const match = typeof value === 'string' && /^(-)?(\d+)(?:\.(\d{1,9}))?s$/.exec(value);
  if (!match) {
    throw new InputError(`${where}: expected a duration such as "1.5s"`);
  }
  const sign = match[1] ? -1 : 1;
  return { seconds: sign * Number(match[2]), nanos: sign * Number((match[3] || '').padEnd(9, '0')) };
}

function formatDuration(seconds, nanos) {
  const negative = seconds < 0 || nanos < 0;
  return `${negative ? '-' : ''}${Math.abs(seconds)}${fraction(Math.abs(nanos))}s`;
}

// Builds a well-known type from its proto3 JSON form.
// NOTE: the Go tests of internal/interop cover Struct, Value, ListValue and
// Timestamp only. Duration, FieldMask, the wrappers and 64-bit integers
// follow the proto3 JSON mapping but no test sends them yet. Returns undefined when
// type is not one of the well-known types with a special JSON form.
function fromJson(type, json, where, Ctor) {
  const name = type.fullName;
  if (name === '.google.protobuf.Struct') {
    if (json === null || typeof json !== 'object' || Array.isArray(json)) {
      throw new InputError(`${where}: expected a JSON object for google.protobuf.Struct`);
    }
    return Ctor.fromJavaScript(json);
  }
  if (name === '.google.protobuf.Value') {
    return Ctor.fromJavaScript(json);
  }
  if (name === '.google.protobuf.ListValue') {
    if (!Array.isArray(json)) {
      throw new InputError(`${where}: expected a JSON array for google.protobuf.ListValue`);
    }
    return Ctor.fromJavaScript(json);
  }
  if (name === '.google.protobuf.Timestamp' || name === '.google.protobuf.Duration') {
    const { seconds, nanos } = name === '.google.protobuf.Timestamp' ? parseTimestamp(json, where) : parseDuration(json, where);
    const msg = new Ctor();
    msg.setSeconds(seconds);
    msg.setNanos(nanos);
    return msg;
  }
  if (name === '.google.protobuf.FieldMask') {
    if (typeof json !== 'string') {
      throw new InputError(`${where}: expected a comma-separated string for google.protobuf.FieldMask`);
    }
    const msg = new Ctor();
    msg.setPathsList(json === '' ? [] : json.split(',').map(snakeCase));
    return msg;
  }
  if (name === '.google.protobuf.Empty') {
    return new Ctor();
  }
  if (Object.prototype.hasOwnProperty.call(WRAPPER_SCALARS, name)) {
    const msg = new Ctor();
    msg.setValue(scalarFromJson(WRAPPER_SCALARS[name], json, where));
    return msg;
  }
  return undefined;
}

// Converts a well-known type to its proto3 JSON form. Returns undefined when
// type is not one of the well-known types with a special JSON form.
function toJson(type, msg) {
  const name = type.fullName;
  if (name === '.google.protobuf.Struct' || name === '.google.protobuf.Value' || name === '.google.protobuf.ListValue') {
    return msg.toJavaScript();
  }
  if (name === '.google.protobuf.Timestamp') {
    return formatTimestamp(msg.getSeconds(), msg.getNanos());
  }
  if (name === '.google.protobuf.Duration') {
    return formatDuration(msg.getSeconds(), msg.getNanos());
  }
  if (name === '.google.protobuf.FieldMask') {
    return msg.getPathsList().map(lowerCamel).join(',');
  }
  if (name === '.google.protobuf.Empty') {
    return {};
  }
  if (Object.prototype.hasOwnProperty.call(WRAPPER_SCALARS, name)) {
    const scalar = WRAPPER_SCALARS[name];
    return scalar === 'bytes' ? msg.getValue_asB64() : scalarToJson(scalar, msg.getValue());
  }
  return undefined;
}

module.exports = {
  InputError,
  fromJson,
  isDefault,
  lowerCamel,
  scalarFromJson,
  scalarToJson,
  toJson,
};
