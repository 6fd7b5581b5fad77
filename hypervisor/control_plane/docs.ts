/**
 * `GET /v1/docs`: a self-contained page (no scripts, no network) listing every route of
 * the OpenAPI document with its summary, parameters, body fields and responses.
 *
 * @module
 */

type Json = Record<string, unknown>;

const escape = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

function schemaFields(schema: Json | undefined, doc: Json): string {
  if (!schema) return "";
  const ref = schema["$ref"] as string | undefined;
  const resolved = ref
    ? ((doc["components"] as Json)["schemas"] as Json)[
      ref.replace("#/components/schemas/", "")
    ] as Json
    : schema;
  const props = resolved?.["properties"] as Record<string, Json> | undefined;
  if (!props) return ref ? `<code>${escape(ref.split("/").pop()!)}</code>` : "";
  const required = new Set((resolved["required"] as string[] | undefined) ?? []);
  const rows = Object.entries(props).map(([name, p]) => {
    const base = (p["type"] as string | undefined) ??
      (p["enum"] ? "enum" : p["anyOf"] || p["oneOf"] ? "one of" : "object");
    const limits = [
      p["enum"] ? `one of ${(p["enum"] as unknown[]).join(", ")}` : "",
      p["minimum"] !== undefined ? `>= ${p["minimum"]}` : "",
      p["maximum"] !== undefined ? `<= ${p["maximum"]}` : "",
      p["maxLength"] !== undefined ? `length <= ${p["maxLength"]}` : "",
      p["maxItems"] !== undefined ? `<= ${p["maxItems"]} items` : "",
    ].filter((x) => x !== "").join(", ");
    const type = limits ? `${base} (${limits})` : base;
    return `<tr><td><code>${escape(name)}</code>${
      required.has(name) ? "" : " (optional)"
    }</td><td>${escape(type)}</td><td>${escape(String(p["description"] ?? ""))}</td></tr>`;
  });
  return `<table><tr><th>field</th><th>type</th><th>meaning</th></tr>${rows.join("")}</table>`;
}

/** Render the docs page of an OpenAPI document. */
export function renderDocs(doc: Json): string {
  const info = doc["info"] as Json;
  const paths = doc["paths"] as Record<string, Record<string, Json>>;
  const sections: string[] = [];
  for (const [path, methods] of Object.entries(paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const body = ((op["requestBody"] as Json | undefined)?.["content"] as Json | undefined)
        ?.["application/json"] as
          | Json
          | undefined;
      const responses = Object.entries((op["responses"] as Record<string, Json>) ?? {})
        .map(([code, r]) => `<li><b>${code}</b> ${escape(String(r["description"] ?? ""))}</li>`)
        .join("");
      sections.push(
        `<section><h2><span class="m">${method.toUpperCase()}</span> <code>${
          escape(path)
        }</code></h2>
<p>${escape(String(op["summary"] ?? ""))}</p>${
          op["description"] ? `<p>${escape(String(op["description"]))}</p>` : ""
        }
${op["security"] ? "<p><i>Needs a bearer token.</i></p>" : "<p><i>No auth.</i></p>"}
${body ? `<h3>Body</h3>${schemaFields(body["schema"] as Json, doc)}` : ""}
<h3>Responses</h3><ul>${responses}</ul></section>`,
      );
    }
  }
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${
    escape(String(info["title"]))
  }</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}
code{background:#f1f1f1;padding:0 .25rem}section{border-top:1px solid #ddd;padding:.5rem 0}
.m{display:inline-block;min-width:4.5rem;color:#fff;background:#2b5797;padding:0 .4rem;border-radius:3px;font-size:.8em}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}</style></head>
<body><h1>${escape(String(info["title"]))}</h1><p>${escape(String(info["description"] ?? ""))}</p>
<p>Machine-readable: <a href="/v1/openapi.json">/v1/openapi.json</a>. Prometheus: <code>GET /metrics</code> (admin).
Live stats: <code>GET /v1/domains/{id}/events</code> (Server-Sent Events).</p>
${sections.join("\n")}</body></html>`;
}
