/** HOST:PORT as operators write listeners and peers: IPv6 hosts in brackets ([::1]:10809). */
import net from 'node:net';
import { UsageError } from './errors.js';

export interface Endpoint {
  /** An IPv4/IPv6 address (IPv6 without brackets) or a host name. */
  host: string;
  port: number;
}

export interface EndpointOptions {
  /** The host must be an IP address, not a name. */
  numeric?: boolean;
  /** How the expected form is spelled in the error (default HOST:PORT or NUMERIC-HOST:PORT). */
  shape?: string;
}

const HOST_PORT = /^(?:\[([^\]]*)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/;

/** `text` as an endpoint, or null if it is not one. */
export function endpointOrNull(text: string, options: EndpointOptions = {}): Endpoint | null {
  const m = HOST_PORT.exec(text);
  if (!m) return null;
  const host = m[1] ?? m[2]!;
  const port = Number(m[3]);
  if (port > 65535) return null;
  if (m[1] !== undefined ? !net.isIPv6(host) : options.numeric && !net.isIPv4(host)) return null;
  return { host, port };
}

/** `text` as an endpoint; a UsageError naming `what` (the option) if it is not one. */
export function parseEndpoint(text: string, what: string, options: EndpointOptions = {}): Endpoint {
  const endpoint = endpointOrNull(text, options);
  if (!endpoint) throw new UsageError(`${what} must be ${options.shape ?? (options.numeric ? 'NUMERIC-HOST:PORT' : 'HOST:PORT')}, got '${text}'`);
  return endpoint;
}

/** HOST:PORT, brackets around an IPv6 host. */
export function formatEndpoint({ host, port }: Endpoint): string {
  return `${net.isIPv6(host) ? `[${host}]` : host}:${port}`;
}
