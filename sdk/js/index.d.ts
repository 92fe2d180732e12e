export type HeaderInput = Record<string, string | string[]> | [string, string][] | Headers;
export type Body = string | Uint8Array | ArrayBuffer | URLSearchParams | null | undefined;
export const ALGORITHM: 'KG1-HMAC-SHA256';
export class KeygateError extends Error { code: string; status?: number; requestId?: string; body?: unknown; }
export class SignError extends KeygateError {}
export interface SignArgs { method: string; url: string; headers?: HeaderInput; body?: Body; accessKey: string; secret: string | Uint8Array; signedHeaders?: string[]; timestamp?: number; nonce?: string; }
export function sign(args: SignArgs): Record<string, string>;
export function stringToSign(args: { method: string; path: string; query: string | null; headers?: HeaderInput; body?: Body; accessKey: string; timestamp: number; nonce: string; signedHeaders?: string[]; authority?: string | null }): string;
export function canonicalQuery(raw: string | null): string;
export function checkRawPath(path: string): void;
export function splitUrl(url: string): { authority: string | null; path: string; query: string | null };
export class Signer {
  constructor(accessKey: string, secret: string | Uint8Array, opts?: { signedHeaders?: string[]; clock?: () => number });
  readonly accessKey: string; offset: number;
  now(): number;
  destroy(): void;
  sign(method: string, url: string, headers?: HeaderInput, body?: Body, opts?: { timestamp?: number; nonce?: string }): Record<string, string>;
  learnSkew(status: number, envelope: unknown, dateHeader?: string | null): boolean;
}
export function signedFetch(signer: Signer, fetchImpl?: typeof fetch): typeof fetch;
export function raiseForKeygate(res: Response): Promise<void>;
export function axiosInstall(axios: any, signer: Signer): void;
export function outboundUrl(base: string, provider: string, path: string): string;
