import { existsSync } from "node:fs";
import { Browser, chromium } from "playwright-core";

/** Debian's Chromium, headless, with nothing reaching out to the network by itself. */
export function launchChromium(): Promise<Browser> {
  const executablePath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
  if (!existsSync(executablePath)) {
    // npm test cannot install a system package by itself: say what to do instead of a stack.
    return Promise.reject(new Error(`the browser tests need Chromium, and there is none at ${executablePath}: install Debian's package (apt-get install chromium, as .ci/run does), or set CHROMIUM_PATH to a Chromium or Chrome binary`));
  }
  return chromium.launch({
    executablePath,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}
