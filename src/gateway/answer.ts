/** How a chat answer ended, as the response builder (openai/responses.ts) tells the request record. */
export type RecordFinish = "stop" | "length" | "error" | "disconnected";

/** What the response builder reports when an answer is finished; what the request record keeps of it. */
export interface AnswerSummary {
  finishReason: RecordFinish;
  /** The reply text sent (so far). */
  text: string;
  completionTokens: number | null;
  /** Date.now() when the first content was sent; null when none was. */
  firstContentAt: number | null;
  /** The HTTP status, when it is not the one the recorder assumes (an error before the body). */
  status?: number;
}
