/**
 * A throwaway PostgreSQL for tests: Debian's `postgresql` binaries (found under /usr/lib/postgresql/<version>/bin,
 * or in $PG_BIN), a cluster made by `initdb` in a temp dir, served on a free loopback port and a socket in that
 * dir, stopped, restarted and removed by the test. `initdb` refuses to run as root: as root (CI's container), the
 * cluster belongs to `nobody` and its commands run through `setpriv`.
 *
 * Tests that need it pass `ignore: PG_MISSING !== null`, and say why in their name: CI installs the package
 * (`.ci/run`), so a skip there is a broken CI, not a pass.
 */

import { join } from "node:path";

/** The newest PostgreSQL's bin folder, or null. */
function findBin(): string | null {
  const candidates: string[] = [];
  const env = Deno.env.get("PG_BIN");
  if (env) candidates.push(env);
  try {
    const versions = [...Deno.readDirSync("/usr/lib/postgresql")].map((e) => e.name)
      .filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
    candidates.push(...versions.map((v) => `/usr/lib/postgresql/${v}/bin`));
  } catch {
    // no Debian PostgreSQL
  }
  return candidates.find((dir) => {
    try {
      return Deno.statSync(join(dir, "initdb")).isFile && Deno.statSync(join(dir, "pg_ctl")).isFile;
    } catch {
      return false;
    }
  }) ?? null;
}

/** Where `initdb`, `pg_ctl` and `psql` are, or null. */
export const PG_BIN: string | null = findBin();

/** Why PostgreSQL tests cannot run here, or null when they can. */
export const PG_MISSING: string | null = PG_BIN
  ? null
  : "PostgreSQL binaries not found (install Debian's 'postgresql' or set PG_BIN)";

/** The unprivileged account the cluster runs as when the tests run as root. */
const NOBODY = 65534;
const asRoot = Deno.uid() === 0;

/** A free TCP port on loopback (free when asked; PostgreSQL takes it right after). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Runs a PostgreSQL binary (as `nobody` under root); throws with its output when it fails. */
async function pg(tool: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  const path = join(PG_BIN!, tool);
  const [cmd, argv] = asRoot
    ? ["setpriv", [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", "--", path, ...args]]
    : [path, args];
  const out = await new Deno.Command(cmd, { args: argv, env: { LC_ALL: "C", ...env }, stdin: "null" })
    .output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`${tool} ${args.join(" ")} failed (${out.code}):\n${text}`);
  return text;
}

/** Clusters not yet closed: stopped when the test process ends, even when a test failed or was filtered out. */
const running = new Set<TestPostgres>();
globalThis.addEventListener("unload", () => {
  for (const db of running) db.closeSync();
});

/** Options of {@link TestPostgres.start}. */
export interface TestPostgresOptions {
  /** Require this password for TCP logins (scram-sha-256); without one every login is trusted. */
  readonly password?: string;
}

/**
 * One cluster. The superuser is `flexora`; {@link url} names the database `flexora`, and {@link database} makes
 * more, so the tests of one file can share a cluster without sharing data.
 */
export class TestPostgres {
  readonly dir: string;
  readonly password: string | undefined;
  #port: number;

  private constructor(dir: string, port: number, password: string | undefined) {
    this.dir = dir;
    this.#port = port;
    this.password = password;
  }

  /** The loopback port it listens on (kept across {@link restart}). */
  get port(): number {
    return this.#port;
  }

  /** Makes a cluster in a temp dir and starts it. */
  static async start(options: TestPostgresOptions = {}): Promise<TestPostgres> {
    if (!PG_BIN) throw new Error(PG_MISSING!);
    const dir = await Deno.makeTempDir({ prefix: "flexora-pg-" });
    if (asRoot) await Deno.chown(dir, NOBODY, NOBODY);
    const db = new TestPostgres(dir, freePort(), options.password);
    running.add(db);
    const args = ["-D", db.data, "-U", "flexora", "--no-sync", "--encoding=UTF8", "--locale=C"];
    if (options.password !== undefined) {
      const pwfile = join(dir, "pwfile");
      await Deno.writeTextFile(pwfile, options.password + "\n");
      if (asRoot) await Deno.chown(pwfile, NOBODY, NOBODY);
      args.push("--auth-local=trust", "--auth-host=scram-sha-256", `--pwfile=${pwfile}`);
    } else {
      args.push("--auth=trust");
    }
    try {
      await pg("initdb", args);
      // A port found free may be taken before the server binds it (test files start clusters in parallel).
      for (let attempt = 1;; attempt++) {
        try {
          await db.#start();
          break;
        } catch (e) {
          if (attempt === 3) throw e;
          db.#port = freePort();
        }
      }
      await pg("createdb", [...db.#client(), "flexora"], db.#env());
    } catch (e) {
      await db.close();
      throw e;
    }
    return db;
  }

  get data(): string {
    return join(this.dir, "data");
  }

  /** The URL of `database` (default `flexora`) for user `flexora`, with the password when there is one. */
  url(database = "flexora", password = this.password): string {
    const auth = password === undefined ? "flexora" : `flexora:${encodeURIComponent(password)}`;
    return `postgres://${auth}@127.0.0.1:${this.port}/${database}`;
  }

  /** Creates an empty database and returns its URL. */
  async database(name: string): Promise<string> {
    await pg("createdb", [...this.#client(), name], this.#env());
    return this.url(name);
  }

  /** Stops the server (fast: sessions are ended), as an operator's restart or a crash of the database would. */
  async stop(): Promise<void> {
    await pg("pg_ctl", ["stop", "-D", this.data, "-m", "fast", "-w"]);
  }

  /** Starts it again on the same port, with the same data. */
  async restart(): Promise<void> {
    await this.#start();
  }

  /** Stops the server (if running) and removes the cluster. */
  async close(): Promise<void> {
    running.delete(this);
    await this.stop().catch(() => {});
    await Deno.remove(this.dir, { recursive: true });
  }

  /** {@link close} at once, for the end of the process: the server is stopped without waiting for sessions. */
  closeSync(): void {
    running.delete(this);
    const path = join(PG_BIN!, "pg_ctl"), args = ["stop", "-D", this.data, "-m", "immediate", "-w"];
    const [cmd, argv] = asRoot
      ? ["setpriv", [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", "--", path, ...args]]
      : [path, args];
    new Deno.Command(cmd, { args: argv, stdout: "null", stderr: "null" }).outputSync();
    Deno.removeSync(this.dir, { recursive: true });
  }

  #start(): Promise<string> {
    // Small shared buffers: several clusters may run at once beside the tests.
    const options = `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off ` +
      "-c shared_buffers=16MB";
    return pg("pg_ctl", [
      "start",
      "-D",
      this.data,
      "-w",
      "-t",
      "60",
      "-l",
      join(this.dir, "log"),
      "-o",
      options,
    ]);
  }

  #client(): string[] {
    return ["-h", this.dir, "-p", String(this.port), "-U", "flexora"];
  }

  #env(): Record<string, string> {
    return this.password === undefined ? {} : { PGPASSWORD: this.password };
  }
}
