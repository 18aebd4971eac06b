// Runs the sandbox on its own: `node dist/src/sandbox/main.js [port]`. `npm start` uses it.
import { Sandbox } from "./index";

async function main(): Promise<void> {
  const port = Number(process.argv[2] ?? process.env.SANDBOX_PORT ?? 0);
  const sandbox = new Sandbox();
  if (process.env.SANDBOX_STATE) sandbox.server.persistTo(process.env.SANDBOX_STATE);
  const url = await sandbox.listen(port);
  process.send?.({ type: "ready", url });
  if (!process.send) process.stdout.write(`sandbox listening on ${url}\n`);
  const stop = () => void sandbox.close().then(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  process.on("disconnect", stop);
}

main().catch((err: Error) => {
  process.stderr.write(`${err.message}\n`);
  process.exit(1);
});
