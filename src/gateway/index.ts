import { createApp } from "./app.js";

// Durable Object classes must be exported by the worker's main module.
export { KeyRateLimiter } from "./objects/key-rate-limiter.js";

export default createApp();
