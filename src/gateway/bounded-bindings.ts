/**
 * D1 and R2 as a request sees them: every call that waits races the request's deadline and fails
 * with a 503 `storage_timeout` when it runs out, so that no storage call can hold a request past
 * its deadline. The views forward to the real bindings (a batch gets the real statements back).
 */
import { type Deadline, storageTimeout } from "./deadline.js";

const D1_WAITS = new Set(["first", "all", "run", "raw"]);
const R2_WAITS = new Set(["get", "put", "delete", "head", "list"]);
const BODY_WAITS = new Set(["arrayBuffer", "text", "json", "blob", "bytes"]);

/** The real statement behind each bounded one, for `batch`. */
const realStatements = new WeakMap<object, D1PreparedStatement>();

function boundedStatement(statement: D1PreparedStatement, deadline: Deadline): D1PreparedStatement {
  const view = new Proxy(statement, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      if (prop === "bind") return (...values: unknown[]) => boundedStatement(target.bind(...values), deadline);
      if (typeof prop === "string" && D1_WAITS.has(prop)) {
        return (...args: unknown[]) =>
          deadline.race(Reflect.apply(value, target, args) as Promise<unknown>, () => storageTimeout("database (D1)"));
      }
      return value.bind(target);
    },
  });
  realStatements.set(view, statement);
  return view;
}

export function boundedD1(db: D1Database, deadline: Deadline): D1Database {
  return new Proxy(db, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      if (prop === "prepare") return (query: string) => boundedStatement(target.prepare(query), deadline);
      if (prop === "batch") {
        return (statements: D1PreparedStatement[]) =>
          deadline.race(target.batch(statements.map((s) => realStatements.get(s) ?? s)), () =>
            storageTimeout("database (D1)"),
          );
      }
      if (prop === "exec")
        return (query: string) => deadline.race(target.exec(query), () => storageTimeout("database (D1)"));
      return value.bind(target);
    },
  });
}

/** An object body whose reads race the deadline as well (a blob can stall mid-read). */
function boundedBody<T extends object>(body: T, deadline: Deadline): T {
  return new Proxy(body, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      if (typeof prop === "string" && BODY_WAITS.has(prop)) {
        return (...args: unknown[]) =>
          deadline.race(Reflect.apply(value, target, args) as Promise<unknown>, () =>
            storageTimeout("object store (R2)"),
          );
      }
      return value.bind(target);
    },
  });
}

export function boundedR2(bucket: R2Bucket, deadline: Deadline): R2Bucket {
  return new Proxy(bucket, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      if (typeof prop === "string" && R2_WAITS.has(prop)) {
        return async (...args: unknown[]) => {
          const result: unknown = await deadline.race(Reflect.apply(value, target, args) as Promise<unknown>, () =>
            storageTimeout("object store (R2)"),
          );
          return prop === "get" && typeof result === "object" && result !== null
            ? boundedBody(result, deadline)
            : result;
        };
      }
      return value.bind(target);
    },
  });
}
