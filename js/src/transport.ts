/**
 * Decoding of the arrays that `filterscope.views._serialization` sends.
 *
 * An encoded array is `{dtype, shape, buffer}` or, for big arrays, `{dtype, shape, chunks}`.
 * ipywidgets hands every binary buffer to the browser as a `DataView` over the websocket
 * message, so a decoded array is a zero-copy typed-array view whenever the buffer is aligned for
 * its element type, and one copy otherwise (typed arrays need `byteOffset % itemsize === 0`).
 * Data are little-endian, like every platform a browser runs on.
 */

export type DType =
  | "int8"
  | "uint8"
  | "int16"
  | "uint16"
  | "int32"
  | "uint32"
  | "float32"
  | "float64";

export type TypedArray =
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array;

type Bytes = DataView | ArrayBuffer | ArrayBufferView;

export interface EncodedArray {
  dtype: DType;
  shape: number[];
  buffer?: Bytes;
  chunks?: Bytes[];
}

export interface NdArray {
  dtype: DType;
  shape: number[];
  data: TypedArray;
}

interface TypedArrayCtor {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): TypedArray;
  readonly BYTES_PER_ELEMENT: number;
}

const CTORS: Record<DType, TypedArrayCtor> = {
  int8: Int8Array,
  uint8: Uint8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  float32: Float32Array,
  float64: Float64Array,
};

/** Raised when a message does not hold what the Python side is documented to send. */
export class TransportError extends Error {
  override name = "TransportError";
}

function isBytes(value: unknown): value is Bytes {
  return value instanceof ArrayBuffer || ArrayBuffer.isView(value);
}

/** Whether `value` has the shape of an encoded array (a `buffer` or `chunks` beside dtype/shape). */
export function isEncodedArray(value: unknown): value is EncodedArray {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.dtype === "string" &&
    Array.isArray(v.shape) &&
    (isBytes(v.buffer) || (Array.isArray(v.chunks) && v.chunks.every(isBytes)))
  );
}

function asUint8(bytes: Bytes): Uint8Array {
  if (bytes instanceof ArrayBuffer) return new Uint8Array(bytes);
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Decode one encoded array into a typed array plus its shape (row-major, like numpy). */
export function decodeArray(encoded: EncodedArray): NdArray {
  const Ctor = CTORS[encoded.dtype];
  if (Ctor === undefined) {
    throw new TransportError(
      `unsupported dtype "${encoded.dtype}"; expected one of ${Object.keys(CTORS).join(", ")}`,
    );
  }
  const size = encoded.shape.reduce((n, d) => n * d, 1);
  const parts = (encoded.chunks ?? (encoded.buffer === undefined ? [] : [encoded.buffer])).map(
    asUint8,
  );
  const byteLength = parts.reduce((n, p) => n + p.byteLength, 0);
  const expected = size * Ctor.BYTES_PER_ELEMENT;
  if (byteLength !== expected) {
    throw new TransportError(
      `array of dtype ${encoded.dtype} and shape [${encoded.shape}] needs ${expected} bytes, ` +
        `got ${byteLength}`,
    );
  }
  const [only] = parts;
  if (parts.length === 1 && only !== undefined && only.byteOffset % Ctor.BYTES_PER_ELEMENT === 0) {
    return {
      dtype: encoded.dtype,
      shape: encoded.shape,
      data: new Ctor(only.buffer, only.byteOffset, size),
    };
  }
  const joined = new Uint8Array(byteLength);
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.byteLength;
  }
  return { dtype: encoded.dtype, shape: encoded.shape, data: new Ctor(joined.buffer, 0, size) };
}

/**
 * Decoded form of a message: every encoded array inside becomes an `NdArray`, everything else
 * stays as it is. Used to type the payload a view expects after `decodeTree`.
 */
export type Decoded<T> = T extends EncodedArray
  ? NdArray
  : T extends object
    ? { [K in keyof T]: Decoded<T[K]> }
    : T;

/** Replace every encoded array in a nested message (objects and arrays) by its decoded form. */
export function decodeTree<T>(value: T): Decoded<T> {
  if (isEncodedArray(value)) return decodeArray(value) as Decoded<T>;
  if (Array.isArray(value)) return value.map((v) => decodeTree(v)) as Decoded<T>;
  if (typeof value === "object" && value !== null && !isBytes(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = decodeTree(v);
    return out as Decoded<T>;
  }
  return value as Decoded<T>;
}

/** A path into a nested message: object keys and array indices, as ipywidgets writes them. */
export type BufferPath = (string | number)[];

/**
 * Put binary buffers back into a message at `paths` (ipywidgets' `buffer_paths`), in place.
 * The kernel lifts every array's bytes out of the JSON into a binary frame; a custom message
 * carries the paths next to the content (`views/_base.py`, `encode_response`).
 */
export function putBuffers(value: unknown, paths: BufferPath[], buffers: Bytes[]): void {
  if (paths.length !== buffers.length) {
    throw new TransportError(`${paths.length} buffer paths but ${buffers.length} buffers`);
  }
  paths.forEach((path, i) => {
    if (path.length === 0) throw new TransportError("a buffer path may not be empty");
    let node = value as Record<string | number, unknown>;
    for (const key of path.slice(0, -1)) {
      const next = node?.[key];
      if (typeof next !== "object" || next === null) {
        throw new TransportError(`buffer path [${path}] does not exist in the message`);
      }
      node = next as Record<string | number, unknown>;
    }
    node[path[path.length - 1] as string | number] = buffers[i];
  });
}
