import type { Context } from "hono";
import { z } from "zod";
import { type Language, isLanguage } from "../../protocol/languages.js";
import type { GatewayEnv } from "../env.js";
import { invalidRequest } from "../errors.js";
import { parseJsonBody, validate } from "../json-body.js";
import { listLanguageDeltas, rollbackLanguage, setLanguageAdapter } from "../services/deltas/language-adapters.js";

const SetLanguage = z.strictObject({
  adapter: z.string().min(1).max(200).nullable(),
  scale: z.number().finite().min(-4).max(4).default(1),
});

function languageParam(c: Context<GatewayEnv>): Language {
  const lang = c.req.param("lang") ?? "";
  if (!isLanguage(lang))
    throw invalidRequest(
      `Unknown language '${lang}'; use a supported BCP-47 primary tag such as 'sw'.`,
      "lang",
      "unknown_language",
    );
  return lang;
}

export async function listLanguagesHandler(c: Context<GatewayEnv>): Promise<Response> {
  return c.json({ object: "list", data: await listLanguageDeltas(c.env.DB) });
}

/** PUT /admin/languages/:lang `{ "adapter": "<adapter id>" | null, "scale": number }`. */
export async function setLanguageHandler(c: Context<GatewayEnv>): Promise<Response> {
  const language = languageParam(c);
  const input = validate(SetLanguage, parseJsonBody(await c.req.text()));
  const row = await setLanguageAdapter(c.env.DB, language, input.adapter, input.scale);
  return c.json(row ?? { language, delta_id: null, adapter_id: null });
}

export async function rollbackLanguageHandler(c: Context<GatewayEnv>): Promise<Response> {
  return c.json(await rollbackLanguage(c.env.DB, languageParam(c)));
}
