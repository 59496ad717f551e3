import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** A free loopback TCP port (bound, read, released). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface TlsFiles {
  /** Self-signed certificate for 127.0.0.1 (also the CA clients trust). */
  cert: string;
  key: string;
}

const openssl = (args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });

/** The certificate and key files of `name` in `dir`. */
const tlsFiles = (dir: string, name: string): TlsFiles => ({
  cert: path.join(dir, `${name}.crt`),
  key: path.join(dir, `${name}.key`),
});

/** `openssl req` with a new unencrypted P-256 key (to `key`) for CN=`name`, written to `out`. */
function requestWithNewKey(name: string, key: string, out: string, options: string[]): void {
  openssl([
    'req',
    ...options,
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    key,
    '-out',
    out,
    '-subj',
    `/CN=${name}`,
  ]);
}

/** A client certificate (P-256) issued by `ca`, for receivers that demand one. */
export function clientCertificate(dir: string, ca: TlsFiles, name = 'client'): TlsFiles {
  const { cert, key } = tlsFiles(dir, name);
  const csr = path.join(dir, `${name}.csr`);
  requestWithNewKey(name, key, csr, ['-new']);
  openssl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca.cert,
    '-CAkey',
    ca.key,
    '-CAcreateserial',
    '-out',
    cert,
    '-days',
    '2',
  ]);
  return { cert, key };
}

/** A self-signed P-256 certificate for 127.0.0.1 and localhost, made by the openssl CLI. */
export function selfSignedCertificate(dir: string, name = 'server'): TlsFiles {
  const { cert, key } = tlsFiles(dir, name);
  requestWithNewKey(name, key, cert, [
    '-x509',
    '-days',
    '2',
    '-addext',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
  ]);
  return { cert, key };
}

/**
 * A private rsyslogd (Debian's) on a loopback port, writing every message it receives, raw, one
 * per line, to `file`. Octet-counted framing is on by default in imtcp; with `tls` the input
 * speaks TLS 1.2/1.3 through the gtls driver.
 */
export class Rsyslog {
  readonly dir: string;
  readonly file: string;
  readonly conf: string;
  readonly pidFile: string;
  private pid: number | undefined;

  constructor(
    readonly port: number,
    readonly tls?: TlsFiles,
    /** With `tls`: demand a client certificate issued by the same CA. */
    readonly requireClientCert = false,
  ) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'custos-rsyslog-'));
    this.file = path.join(this.dir, 'received.log');
    this.conf = path.join(this.dir, 'rsyslog.conf');
    this.pidFile = path.join(this.dir, 'rsyslog.pid');
    fs.mkdirSync(path.join(this.dir, 'work'));
    const tlsGlobal = tls
      ? `global(DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="${tls.cert}" ` +
        `DefaultNetstreamDriverCertFile="${tls.cert}" DefaultNetstreamDriverKeyFile="${tls.key}")\n`
      : '';
    const module = tls
      ? `module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" ` +
        `StreamDriver.AuthMode="${requireClientCert ? 'x509/certvalid' : 'anon'}")`
      : 'module(load="imtcp")';
    const input = tls
      ? `input(type="imtcp" address="127.0.0.1" port="${port}" ruleset="out" ` +
        `gnutlsPriorityString="NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2")`
      : `input(type="imtcp" address="127.0.0.1" port="${port}" ruleset="out")`;
    fs.writeFileSync(
      this.conf,
      [
        `global(workDirectory="${path.join(this.dir, 'work')}" maxMessageSize="64k")`,
        tlsGlobal,
        module,
        'template(name="raw" type="string" string="%rawmsg%\\n")',
        `ruleset(name="out") { action(type="omfile" file="${this.file}" template="raw") }`,
        input,
        '',
      ].join('\n'),
    );
  }

  /** Starts rsyslogd and waits until its port accepts connections. */
  async start(): Promise<void> {
    fs.rmSync(this.pidFile, { force: true });
    const child = spawn('/usr/sbin/rsyslogd', ['-n', '-f', this.conf, '-i', this.pidFile], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    this.pid = child.pid;
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`rsyslogd exited: ${stderr}`);
      const open = await new Promise<boolean>((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port: this.port });
        s.once('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      });
      if (open) return;
      if (Date.now() > deadline) throw new Error(`rsyslogd did not listen: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGTERM, then waits for the process to be gone. */
  async stop(): Promise<void> {
    const pid = this.pid;
    if (pid === undefined) return;
    this.pid = undefined;
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      return;
    }
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      try {
        process.kill(pid, 0);
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    process.kill(pid, 'SIGKILL');
  }

  /** Every message received so far (raw, without framing). */
  lines(): string[] {
    if (!fs.existsSync(this.file)) return [];
    return fs.readFileSync(this.file, 'utf8').split('\n').filter(Boolean);
  }

  /** Waits until `predicate` holds for the received lines (rsyslog writes asynchronously). */
  async waitFor(predicate: (lines: string[]) => boolean, timeoutMs = 10_000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const lines = this.lines();
      if (predicate(lines)) return lines;
      if (Date.now() > deadline) return lines;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async dispose(): Promise<void> {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A `Rsyslog` (see there) on a free loopback port, started. */
export async function startRsyslog(tls?: TlsFiles, requireClientCert = false): Promise<Rsyslog> {
  const rsyslog = new Rsyslog(await freePort(), tls, requireClientCert);
  try {
    await rsyslog.start();
  } catch (error) {
    await rsyslog.dispose();
    throw error;
  }
  return rsyslog;
}
