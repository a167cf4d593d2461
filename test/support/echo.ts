/** What the stand-in backend replies; pure, so tests in workerd can import it too. */
export const TEST_MODEL = "lens-test-echo";

/** The reply the echo backend gives before truncation. */
export function echoReply(lastUser: string): string {
  return `You said: ${lastUser}`;
}

/** Splits text into "tokens": words with their leading space. */
export function echoTokens(text: string): string[] {
  return text.match(/\s*\S+/gu) ?? [];
}
