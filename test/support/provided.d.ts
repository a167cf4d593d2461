// What the global setup hands to the tests with `provide`.
import "vitest";

declare module "vitest" {
  export interface ProvidedContext {
    /** Base URLs of the stand-in backends, by behaviour name. */
    backends: Record<string, string>;
  }
}
