/**
 * A check that the Redis server of a `--queue` URL answers, before the
 * queue clients connect (docs/DISTRIBUTED.md "Many machines"): BullMQ's
 * clients retry an unreachable server forever, so a wrong `--queue` would
 * hang silently; this one PINGs once (after AUTH and SELECT when the URL has
 * them) and fails with an error naming the URL.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { Socket } from "node:net";

/** Where a Redis server is and how to log in (a parsed `--queue` URL). */
export interface RedisTarget {
  host: string;
  port: number;
  /** The database number (SELECT). */
  db: number;
  username?: string;
  password?: string;
}

/** Seconds to wait for the server's answers. */
const TIMEOUT_S = 10;

/** One Redis command in RESP. */
function command(...words: string[]): string {
  return `*${words.length}\r\n${words.map((w) => `$${Buffer.byteLength(w)}\r\n${w}\r\n`).join("")}`;
}

/**
 * Resolves once the server answers PING with PONG.
 *
 * @throws Error naming `--queue` when it cannot be reached, refuses the credentials or the database, or does not answer
 */
export function reachRedis(url: string, target: RedisTarget): Promise<void> {
  const commands = [
    ...(target.password !== undefined ? [target.username ? command("AUTH", target.username, target.password) : command("AUTH", target.password)] : []),
    ...(target.db !== 0 ? [command("SELECT", String(target.db))] : []),
    command("PING"),
  ];
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    const fail = (why: string) => {
      socket.destroy();
      reject(new Error(`Cannot reach Redis at --queue ${url}: ${why}`));
    };
    socket.setTimeout(TIMEOUT_S * 1000, () => fail(`no answer in ${TIMEOUT_S} s`));
    socket.once("error", (e) => fail(e.message));
    let answers = "";
    socket.on("data", (chunk: Buffer) => {
      answers += chunk.toString("latin1");
      const lines = answers.split("\r\n").filter((l) => l !== "");
      const error = lines.find((l) => l.startsWith("-"));
      if (error) return fail(error.slice(1));
      if (lines.length >= commands.length) {
        if (lines.at(-1) !== "+PONG") return fail(`it answered "${lines.at(-1)}" to PING`);
        socket.end();
        resolve();
      }
    });
    socket.connect(target.port, target.host, () => socket.write(commands.join("")));
  });
}
