/** What the stand-in backend replies and logs; pure, so tests in workerd can import it too. */
export const TEST_MODEL = "lens-test-echo";
/** The shared secret the test backends require and the gateway under test sends. */
export const TEST_BACKEND_SECRET = "test-backend-secret-0123456789";

/** The reply the echo backend gives before truncation. */
export function echoReply(lastUser: string): string {
  return `You said: ${lastUser}`;
}

/** Splits text into "tokens": words with their leading space. */
export function echoTokens(text: string): string[] {
  return text.match(/\s*\S+/gu) ?? [];
}

/** What the stand-in backend records of each generate request. */
export interface LoggedRequest {
  request_id: string;
  model: string;
  language: string;
  delta: string | null;
  max_tokens: number | null;
  stop: string[];
  /** How the response ended: "completed", or "aborted" when the caller went away first. */
  outcome: "open" | "completed" | "aborted";
}
