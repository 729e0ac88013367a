import { describe, expect, it } from "vitest";
import { encode } from "./test_helpers";
import { decodeArray, decodeTree, isEncodedArray, TransportError } from "./transport";

describe("decodeArray", () => {
  it("views an aligned buffer without copying", () => {
    const enc = encode(new Float32Array([1.5, -2, Number.NaN]), "float32", [3], 8);
    const out = decodeArray(enc);
    expect(out.data).toBeInstanceOf(Float32Array);
    expect(Array.from(out.data)).toEqual([1.5, -2, Number.NaN]);
    expect(out.data.buffer).toBe((enc.buffer as DataView).buffer);
  });

  it("copies a buffer whose offset does not suit the element size", () => {
    const enc = encode(new Int32Array([7, -8, 2 ** 31 - 1]), "int32", [3], 5);
    const out = decodeArray(enc);
    expect(out.data).toBeInstanceOf(Int32Array);
    expect(Array.from(out.data)).toEqual([7, -8, 2 ** 31 - 1]);
    expect(out.data.buffer).not.toBe((enc.buffer as DataView).buffer);
  });

  it("joins chunks in order and keeps the shape", () => {
    const values = Float64Array.from({ length: 6 }, (_, i) => i / 4);
    const bytes = new Uint8Array(values.buffer);
    const chunks = [bytes.slice(0, 16), bytes.slice(16, 40), bytes.slice(40)].map(
      (c) => new DataView(c.buffer),
    );
    const out = decodeArray({ dtype: "float64", shape: [2, 3], chunks });
    expect(out.shape).toEqual([2, 3]);
    expect(Array.from(out.data)).toEqual(Array.from(values));
  });

  it("decodes every dtype the Python side sends", () => {
    const cases = [
      [new Int8Array([-128, 127]), "int8"],
      [new Uint8Array([0, 255]), "uint8"],
      [new Int16Array([-32768, 32767]), "int16"],
      [new Uint16Array([0, 65535]), "uint16"],
      [new Uint32Array([0, 2 ** 32 - 1]), "uint32"],
      [new Float64Array([2 ** 53, -0.5]), "float64"],
    ] as const;
    for (const [data, dtype] of cases) {
      const out = decodeArray(encode(data, dtype, [2], 3));
      expect(out.data.constructor).toBe(data.constructor);
      expect(Array.from(out.data)).toEqual(Array.from(data));
    }
  });

  it("accepts a 0-d array and an empty one", () => {
    expect(Array.from(decodeArray(encode(new Float32Array([4]), "float32", [])).data)).toEqual([4]);
    expect(decodeArray(encode(new Int32Array(0), "int32", [0, 3])).data.length).toBe(0);
  });

  it("refuses byte counts that do not match dtype and shape", () => {
    const enc = encode(new Float32Array([1, 2, 3]), "float32", [4]);
    expect(() => decodeArray(enc)).toThrow(TransportError);
    expect(() => decodeArray(enc)).toThrow("needs 16 bytes, got 12");
  });

  it("refuses dtypes JavaScript has no typed array for", () => {
    const enc = { ...encode(new Float32Array([1, 2]), "float32"), dtype: "int64" as never };
    expect(() => decodeArray(enc)).toThrow('unsupported dtype "int64"');
  });
});

describe("decodeTree", () => {
  it("decodes arrays at any depth and leaves other values alone", () => {
    const message = {
      title: "Loss",
      range: [0, 9],
      lines: [{ name: "train", x: encode(new Int32Array([0, 5]), "int32"), markers: true }],
    };
    const out = decodeTree(message);
    expect(out.title).toBe("Loss");
    expect(out.range).toEqual([0, 9]);
    expect(Array.from(out.lines[0]?.x.data ?? [])).toEqual([0, 5]);
    expect(out.lines[0]?.markers).toBe(true);
  });

  it("tells encoded arrays from look-alikes", () => {
    expect(isEncodedArray(encode(new Uint8Array([1]), "uint8"))).toBe(true);
    expect(isEncodedArray({ dtype: "uint8", shape: [1] })).toBe(false);
    expect(isEncodedArray({ dtype: "uint8", shape: [1], buffer: [1] })).toBe(false);
    expect(isEncodedArray(null)).toBe(false);
  });
});
