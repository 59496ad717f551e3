import { Buffer } from 'node:buffer';
import net from 'node:net';
import tls from 'node:tls';

export interface SyslogTarget {
  transport: 'tcp' | 'tls';
  host: string;
  port: number;
  /** TLS only: trusted CA certificates (PEM); the system store when absent. */
  ca?: string | Buffer | undefined;
  /** TLS only: client certificate and key (PEM) for receivers that demand one. */
  cert?: string | Buffer | undefined;
  key?: string | Buffer | undefined;
  /** TLS only: the name to check in the certificate (default: `host`). */
  servername?: string | undefined;
  /** Whole-batch deadline: connect, write, and the receiver's close (default 10 s). */
  timeoutMs?: number | undefined;
  /**
   * TLS only: how long the connection must stay open after the handshake before the batch is
   * written (default 100 ms). A receiver that refuses the client after a TLS 1.3 handshake
   * (rsyslog checking the client certificate, or past its session limit) closes within that time;
   * writing at once would let it read and discard the batch and close cleanly, which looks like a
   * confirmation. 0 writes at once.
   */
  settleMs?: number | undefined;
}

/** A batch the receiver did not confirm; the caller resends it (duplicates, never loss). */
export class SyslogDeliveryError extends Error {
  override readonly name = 'SyslogDeliveryError';
  constructor(
    readonly code: 'connect' | 'timeout' | 'reset' | 'unconfirmed',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Sends already framed messages (see `frameOctetCounting`) over one new TCP or TLS connection
 * and resolves only when the receiver confirmed them.
 *
 * Syslog over TCP has no application acknowledgement, so "confirmed" is defined by the
 * connection: write everything, half-close (FIN, after TLS close_notify), and wait for the
 * receiver to close its side cleanly. A receiver such as rsyslog closes only after it has read
 * to the end of the stream; a receiver that dies or resets first makes this reject, and the
 * caller resends the whole batch. What the receiver does after reading (its own queue) is
 * its business: configure a disk-assisted queue there for end-to-end durability.
 * Over TLS the batch is written only once the connection stayed open `settleMs` after the
 * handshake: a receiver that refuses the client after a TLS 1.3 handshake closes in that time
 * (the batch is then unconfirmed and resent). Limit: a receiver that refuses later than that, or
 * reads and discards the data and then closes cleanly, still looks like a confirmation; only an
 * application-level acknowledgement (RELP) closes that window.
 *
 * @example
 * await sendSyslogBatch({ transport: 'tcp', host: '127.0.0.1', port: 6514 },
 *   [frameOctetCounting(formatSyslog(message))]);
 */
export function sendSyslogBatch(
  target: SyslogTarget,
  frames: readonly Uint8Array[],
): Promise<void> {
  const payload = Buffer.concat(frames.map((f) => Buffer.from(f)));
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    let connected = false;
    let finished = false;
    let peerEnded = false;
    const socket =
      target.transport === 'tls'
        ? tls.connect({
            host: target.host,
            port: target.port,
            ca: target.ca,
            cert: target.cert,
            key: target.key,
            // SNI takes host names only; the certificate check still uses `host`.
            servername:
              target.servername ?? (net.isIP(target.host) === 0 ? target.host : undefined),
            minVersion: 'TLSv1.2',
          })
        : net.connect({ host: target.host, port: target.port });
    const fail = (error: SyslogDeliveryError) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      reject(error);
    };
    socket.setTimeout(target.timeoutMs ?? 10_000, () =>
      fail(new SyslogDeliveryError('timeout', 'syslog receiver did not confirm in time')),
    );
    let settle: NodeJS.Timeout | undefined;
    const settleMs = target.transport === 'tls' ? (target.settleMs ?? 100) : 0;
    socket.once(target.transport === 'tls' ? 'secureConnect' : 'connect', () => {
      connected = true;
      if (settleMs <= 0) {
        socket.end(payload);
        return;
      }
      // Still open after the settle time: the receiver kept us; now send.
      settle = setTimeout(() => {
        if (!settled && !socket.readableEnded && !socket.destroyed) socket.end(payload);
      }, settleMs);
    });
    socket.once('close', () => clearTimeout(settle));
    // Receivers send nothing; read anyway so that a chatty one cannot stall the close.
    socket.on('data', () => undefined);
    socket.once('finish', () => {
      finished = true;
    });
    // Only a close that follows our own end of stream can mean "read to the end".
    socket.once('end', () => {
      peerEnded = finished;
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      const code = connected ? 'reset' : 'connect';
      fail(
        new SyslogDeliveryError(code, `syslog ${code} error: ${error.code ?? error.message}`, {
          cause: error,
        }),
      );
    });
    socket.once('close', (hadError) => {
      if (settled) return;
      if (connected && peerEnded && !hadError && socket.bytesWritten >= payload.length) {
        settled = true;
        resolve();
      } else {
        fail(new SyslogDeliveryError('unconfirmed', 'syslog connection closed before confirming'));
      }
    });
  });
}

/** Parses `tcp://host:port` or `tls://host:port` (IPv6 in brackets). */
export function parseSyslogUrl(url: string): {
  transport: 'tcp' | 'tls';
  host: string;
  port: number;
} {
  const m = /^(tcp|tls):\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(url);
  const port = Number(m?.[3]);
  if (!m || port < 1 || port > 65535)
    throw new TypeError('syslog URL must be tcp://host:port or tls://host:port');
  return {
    transport: m[1] as 'tcp' | 'tls',
    host: m[2]!.replace(/^\[|\]$/g, ''),
    port,
  };
}
