import { createApp } from "./app.js";

// Durable Object classes must be exported by the worker's main module.
export { KeyRateLimiter } from "./services/rate-limit/limiter-object.js";

export default createApp();
