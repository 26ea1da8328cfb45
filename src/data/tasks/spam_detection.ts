/**
 * `spam_detection`: spam or ham for held-out SpamAssassin messages. The
 * context is the subject and the start of the body, then the question; the
 * choices are " no" (ham) and " yes" (spam). Labels come from the corpus
 * groups; `assemble.ts` balances the classes, so chance is 50%.
 *
 * @module
 */
import { countWords, truncateWords } from "../text.ts";
import type { Candidate, TaskBuildContext, TaskDefinition } from "./types.ts";

/** Body words kept in the context. */
const BODY_WORDS = 45;
/** Messages with fewer body words are skipped (attachment-only, empty HTML). */
const MIN_BODY_WORDS = 8;

/** The task definition. */
export const spamDetection: TaskDefinition = {
  name: "spam_detection",
  description: "Is a held-out SpamAssassin email (subject and start of body) spam? Choices: no (ham) / yes (spam).",
  choices: 2,
  balanced: true,
  build(ctx: TaskBuildContext): Candidate[] {
    const candidates: Candidate[] = [];
    for (const email of ctx.sources.spam) {
      const split = ctx.splitOfDoc(email.id, "spam");
      if (split === undefined || countWords(email.body) < MIN_BODY_WORDS) continue;
      const body = truncateWords(email.body.replace(/\s*\n\s*/g, "\n"), BODY_WORDS);
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
