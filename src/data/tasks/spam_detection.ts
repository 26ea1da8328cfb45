/**
 * `spam_detection`: spam or ham for held-out SpamAssassin messages. The
 * context is the subject and the start of the body, then the question; the
 * choices are " no" (ham) and " yes" (spam). Labels come from the corpus
 * groups; `assemble.ts` balances the classes, so chance is 50%.
 *
 * @module
 */
import { countWords, truncateWords } from "../text.ts";
import { stratifiedTaskSplits } from "./assemble.ts";
import type { Candidate, TaskBuildContext, TaskDefinition } from "./types.ts";

/** Body words kept in the context. */
const BODY_WORDS = 30;
/** Messages with fewer body words are skipped (attachment-only, empty HTML). */
const MIN_BODY_WORDS = 8;

/**
 * The body without quoted replies (`>` lines), their "… wrote:" attribution
 * lines and blank lines: the words the sender wrote (quoted text is often
 * another message of the corpus).
 */
export function unquotedBody(body: string): string {
  return body
    .split("\n")
    .filter((line) => !/^\s*>/.test(line) && !/wrote:\s*$/.test(line) && line.trim() !== "")
    .join("\n");
}

/** The task definition. */
export const spamDetection: TaskDefinition = {
  name: "spam_detection",
  description: "Is a held-out SpamAssassin email (subject and start of body) spam? Choices: no (ham) / yes (spam).",
  choices: 2,
  balanced: true,
  build(ctx: TaskBuildContext): Candidate[] {
    const emails = ctx.sources.spam
      .filter((e) => ctx.heldOut(e.id, "spam"))
      .map((e) => ({ email: e, body: unquotedBody(e.body) }))
      .filter((e) => countWords(e.body) >= MIN_BODY_WORDS);
    const splits = stratifiedTaskSplits(emails.map((e) => ({ id: e.email.id, label: e.email.label })));
    const candidates: Candidate[] = [];
    for (const { email, body: fullBody } of emails) {
      const split = splits.get(email.id)!;
      const body = truncateWords(fullBody, BODY_WORDS);
      candidates.push({
        doc: email.id,
        split,
        label: email.label,
        context: `Subject: ${email.subject}\n\n${body}\n\nQuestion: Is this email spam?\nAnswer:`,
        choices: [" no", " yes"],
        gold: email.label === "spam" ? 1 : 0,
      });
    }
    return candidates;
  },
};
