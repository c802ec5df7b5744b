// The Probot baseline for bench/ingest.py: a minimal Probot app served the way
// Probot's documentation shows for `createNodeMiddleware` (a plain node:http server).
//
// Probot reads its usual configuration from the environment: APP_ID, PRIVATE_KEY,
// WEBHOOK_SECRET (signatures are verified with it, as in any Probot app), LOG_LEVEL.
// HOST and PORT say where to listen. Webhooks are taken on Probot's default path,
// /api/github/webhooks; GET /healthz answers 200 with the number of handled events.
import { createServer } from "node:http";
import { createNodeMiddleware, createProbot } from "probot";

let labeled = 0;

/** @param {import("probot").Probot} app */
const appFn = (app) => {
  app.on("issues.labeled", async () => {
    labeled += 1;
  });
};

const middleware = await createNodeMiddleware(appFn, { probot: createProbot() });

const server = createServer((req, res) => {
  middleware(req, res, () => {
    if (req.method === "GET" && req.url === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end(`ok labeled=${labeled}\n`);
      return;
    }
    res.writeHead(404);
    res.end();
  });
});

const host = process.env.HOST ?? "127.0.0.1";
const port = Number(process.env.PORT ?? "3000");
server.listen(port, host, () => {
  console.log(`probot ${host}:${port} ready`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    console.log(`probot handled ${labeled} issues.labeled events`);
    server.close();
    process.exit(0);
  });
}
