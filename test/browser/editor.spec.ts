import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import type { Browser, Page } from "playwright-core";
import { request } from "undici";
import { launchChromium } from "../support/browser";
import { EditorNodeRed, installPackedPackage, packageJson, repoRoot, shippedExamples, startEditorNodeRed } from "./editor-setup";

const run = promisify(execFile);

// These run in the page (page.evaluate), where the editor's globals live.
declare const window: any;
declare const document: any;
declare const getComputedStyle: any;

const CATEGORY = "saas pipelines";
const ALL_TYPES = Object.keys(packageJson["node-red"].nodes);

/** Runs in the page: the options that a visible select of the form cuts off at its width. */
function cutOffScript(form: string): string[] {
  const ctx = document.createElement("canvas").getContext("2d");
  const cut: string[] = [];
  for (const sel of document.querySelectorAll(`${form} select`)) {
    if (sel.offsetParent === null) continue;
    const style = getComputedStyle(sel);
    ctx.font = style.font;
    const room = sel.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - 16;
    for (const o of sel.options) if (ctx.measureText(o.text).width > room) cut.push(`${sel.id}: "${o.text}"`);
  }
  return cut;
}

/** With GW_SCREENSHOTS set (a folder, e.g. docs), the pictures the README shows are taken anew. */
async function screenshot(page: Page, name: string, clip?: { x: number; y: number; width: number; height: number }): Promise<void> {
  if (process.env.GW_SCREENSHOTS) await page.screenshot({ path: path.join(process.env.GW_SCREENSHOTS, name), clip });
}

/**
 * What a Node-RED user meets in the editor: the packed package installed with its production
 * dependencies only into a fresh user directory, Node-RED started on it, Chromium on the editor.
 */
describe("the package in the Node-RED editor", function () {
  this.timeout(120_000);
  let red: EditorNodeRed;
  let browser: Browser;
  let page: Page;
  let userDir: string;
  let tarball: string;
  const pageErrors: string[] = [];

  before(async function () {
    this.timeout(300_000);
    ({ userDir, tarball } = await installPackedPackage());
    red = await startEditorNodeRed(userDir);
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.on("pageerror", (err) => pageErrors.push(err.message));
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") pageErrors.push(m.text());
    });
    await openEditor();
  });

  after(async () => {
    await browser?.close();
    await red?.stop();
    if (userDir) rmSync(path.dirname(userDir), { recursive: true, force: true });
  });

  async function openEditor(): Promise<void> {
    await page.goto(red.url);
    await page.waitForFunction(() => {
      const R = (window as any).RED;
      return R?.nodes?.getType?.("goto-call-logs") && R.workspaces.count() > 0 && document.querySelector("#red-ui-palette .red-ui-palette-node");
    }, undefined, { timeout: 60_000 });
    await page.waitForTimeout(300);
  }

  /** The flow nodes of this package (config nodes live in their own sidebar, not in the palette). */
  async function flowTypes(): Promise<string[]> {
    return page.evaluate((types) => types.filter((t) => (window as any).RED.nodes.getType(t)?.category !== "config"), ALL_TYPES);
  }

  async function deployInEditor(): Promise<void> {
    await page.locator("#red-ui-header-button-deploy").click();
    const confirm = page.locator("#red-ui-deploy-dialog-confirm-deploy-deploy");
    // Unconfigured nodes make the editor ask once; that is the point of an example before setup.
    await Promise.race([
      confirm.waitFor({ state: "visible", timeout: 3000 }).then(() => confirm.click()).catch(() => undefined),
      page.waitForFunction(() => !(window as any).RED.nodes.dirty(), undefined, { timeout: 3000 }).catch(() => undefined),
    ]);
    await page.waitForFunction(() => !(window as any).RED.nodes.dirty(), undefined, { timeout: 30_000 });
  }

  it("links, in the README, only to absolute addresses or to files the tarball holds (npm and the Flow Library show it alone)", async () => {
    const readme = readFileSync(path.join(repoRoot, "README.md"), "utf8");
    const targets = [...readme.matchAll(/!?\[[^\]]*\]\(([^)\s]+)\)|src="([^"]+)"/g)].map((m) => m[1] ?? m[2]!);
    assert.ok(targets.length > 10);
    const packed = new Set((await run("tar", ["-tzf", tarball])).stdout.split("\n").map((f) => f.replace(/^package\//, "")));
    const broken = targets.filter((t) => !/^(https?:|#|mailto:)/.test(t) && !packed.has(t.replace(/^\.\//, "")));
    assert.deepEqual(broken, []);
    const meta = JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8"));
    for (const key of ["repository", "homepage", "bugs"]) assert.ok(meta[key], `package.json has ${key}`);
  });

  it("registers every type of package.json, and the palette lists each flow node in the package's own category", async () => {
    const res = await request(`${red.url}/nodes`, { headers: { accept: "application/json" } });
    const sets = (await res.body.json()) as Array<{ module: string; types: string[]; err?: string }>;
    const ours = sets.filter((s) => s.module === packageJson.name);
    assert.deepEqual(ours.filter((s) => s.err).map((s) => s.err), []);
    assert.deepEqual(ours.flatMap((s) => s.types).sort(), [...ALL_TYPES].sort());
    const types = await flowTypes();
    assert.equal(types.length, 12);
    const palette = await page.evaluate(
      ({ types }) =>
        types.map((t) => {
          const def = (window as any).RED.nodes.getType(t);
          const el = document.querySelector(`.red-ui-palette-node[data-palette-type="${t}"]`);
          const section = el?.closest(".red-ui-palette-category");
          return {
            type: t,
            category: def.category,
            section: section?.querySelector(".red-ui-palette-header")?.textContent?.trim().toLowerCase(),
            label: el?.querySelector(".red-ui-palette-label")?.textContent?.replace(/\s+/g, " ").trim(),
            icon: typeof def.icon === "function" ? def.icon.call({}) : def.icon,
          };
        }),
      { types, category: CATEGORY },
    );
    for (const p of palette) {
      assert.equal(p.category, CATEGORY, `${p.type}'s category`);
      assert.equal(p.section, CATEGORY, `${p.type} is shown under ${CATEGORY}`);
      assert.ok(p.label && !/ - /.test(p.label), `${p.type} has a palette label (${p.label})`);
    }
    assert.equal(palette.find((p) => p.type === "connection-board")!.label, "connection board");
    // One category, ordered by service: each service's nodes side by side.
    const order = await page.evaluate((category) => {
      const section = [...document.querySelectorAll(".red-ui-palette-category")].find((c: any) => c.querySelector(".red-ui-palette-header")?.textContent?.trim().toLowerCase() === category);
      return [...(section?.querySelectorAll(".red-ui-palette-node") ?? [])].map((n: any) => n.getAttribute("data-palette-type"));
    }, CATEGORY);
    const services = order.map((t: string) => t.split("-")[0]);
    assert.deepEqual(services.filter((s: string, i: number) => i > 0 && s !== services[i - 1] && services.slice(0, i).includes(s)), [], `palette order ${order.join(", ")}`);
    assert.equal(new Set(palette.map((p) => p.icon)).size, palette.length, `one icon per node: ${palette.map((p) => `${p.type}=${p.icon}`).join(", ")}`);
    await page.evaluate((category) => {
      const header = document.querySelector(`#red-ui-palette-header-${category.replace(/ /g, "_")}`) ?? [...document.querySelectorAll(".red-ui-palette-header")].find((h) => h.textContent?.trim().toLowerCase() === category);
      header?.scrollIntoView();
    }, CATEGORY);
    const box = await page.locator(".red-ui-palette-category", { has: page.locator('.red-ui-palette-node[data-palette-type="goto-call-logs"]') }).boundingBox();
    if (box) await screenshot(page, "palette.png", { x: box.x, y: Math.max(0, box.y), width: box.width, height: Math.min(box.height, 900 - box.y) });
  });

  it("lists the seven examples under Import › Examples", async () => {
    const labels = await exampleLabels();
    assert.deepEqual([...labels].sort(), [...shippedExamples().keys()].sort());
    assert.equal(labels.length, 7);
    await closeImportDialog();
  });

  async function closeImportDialog(): Promise<void> {
    const cancel = page.locator("#red-ui-clipboard-dialog-cancel");
    if (await cancel.isVisible()) await cancel.click();
  }

  async function openExamples(): Promise<void> {
    await page.evaluate(() => (window as any).RED.actions.invoke("core:show-examples-import-dialog"));
    const tab = page.locator("#red-ui-clipboard-dialog-import-tab-examples");
    await tab.waitFor({ state: "visible" });
    const folder = tab.locator(".red-ui-treeList-label", { hasText: packageJson.name });
    await folder.first().waitFor();
    const expanded = await tab.locator(".red-ui-treeList-label", { hasText: "goto-call-logs" }).count();
    if (!expanded) await folder.first().click();
    await tab.locator(".red-ui-treeList-label", { hasText: "goto-call-logs" }).first().waitFor();
  }

  async function exampleLabels(): Promise<string[]> {
    await openExamples();
    return page.evaluate((name) => {
      const tab = document.querySelector("#red-ui-clipboard-dialog-import-tab-examples")!;
      const folder = [...tab.querySelectorAll("li")].find((li: any) => li.querySelector(".red-ui-treeList-label-text")?.textContent?.trim() === name);
      return [...(folder?.querySelectorAll(":scope ol li .red-ui-treeList-label-text") ?? [])].map((l: any) => l.textContent.trim()).filter(Boolean);
    }, packageJson.name);
  }

  async function importExample(name: string): Promise<void> {
    await openExamples();
    await page.locator("#red-ui-clipboard-dialog-import-tab-examples .red-ui-treeList-label", { hasText: new RegExp(`^${name}$`) }).first().click();
    await page.locator("#red-ui-clipboard-dialog-ok").click();
    await page.locator("#red-ui-clipboard-dialog").waitFor({ state: "hidden" }).catch(() => undefined);
    await page.waitForTimeout(400);
    // A conflict shows the import dialog again, with its conflict button, or a notification.
    const conflict = await page.evaluate(() => {
      const visible = (sel: string) => [...document.querySelectorAll(sel)].some((e) => (e as any).offsetParent !== null);
      const notes = [...document.querySelectorAll(".red-ui-notification")].map((n) => n.textContent ?? "");
      return { dialog: visible("#red-ui-clipboard-dialog-import-conflict"), notes: notes.filter((t) => /already exist|conflict/i.test(t)) };
    });
    assert.deepEqual(conflict, { dialog: false, notes: [] }, `importing ${name} raised a conflict`);
    // The editor attaches an imported flow to the mouse until it is placed: place it.
    await page.mouse.click(700, 450);
  }

  describe("every example, imported one after another and deployed", () => {
    let logFrom = 0;

    it("imports all seven with no conflict and no duplicate config node", async () => {
      const examples = shippedExamples();
      for (const name of examples.keys()) await importExample(name);
      const state = await page.evaluate(() => {
        const RED = (window as any).RED;
        const config: Array<{ id: string; type: string; name: string }> = [];
        RED.nodes.eachConfig((n: any) => {
          if (n._def?.category === "config" && !String(n.type).startsWith("ui-")) config.push({ id: n.id, type: n.type, name: n.name ?? "" });
        });
        const ids: string[] = [];
        RED.nodes.eachNode((n: any) => ids.push(n.id));
        return { config, ids, tabs: RED.nodes.getWorkspaceOrder().length };
      });
      const shipped = [...examples.values()].flat();
      const shippedConfig = shipped.filter((n) => !n.z && n.type !== "tab" && !String(n.type).startsWith("ui-"));
      assert.equal(state.config.length, shippedConfig.length, "as many config nodes as the examples bring");
      const keys = state.config.map((c) => `${c.type} "${c.name}"`);
      assert.deepEqual(keys.filter((k, i) => keys.indexOf(k) !== i), [], "no two config nodes of one type and name");
      // Imported as they are: the examples' own ids, not copies.
      for (const n of shipped.filter((n) => n.z)) assert.ok(state.ids.includes(n.id as string), `${n.id} imported under its own id`);
      assert.ok(state.tabs >= 7);
    });

    it("flags, before the first deploy, every config node whose required settings are empty", async () => {
      const configs = await page.evaluate(() => {
        const RED = (window as any).RED;
        const out: Array<{ type: string; name: string; valid: boolean; errors: string[] }> = [];
        RED.nodes.eachConfig((n: any) => {
          if (String(n.type).startsWith("ui-")) return;
          RED.editor.validateNode(n);
          out.push({ type: n.type, name: n.name ?? "", valid: n.valid, errors: n.validationErrors ?? [] });
        });
        return out;
      });
      // The embedded database needs nothing; every other config node of the examples is empty.
      const empty = configs.filter((c) => c.type !== "postgres-database");
      assert.ok(empty.length >= 10, `${empty.length} config nodes checked`);
      assert.deepEqual(empty.filter((c) => c.valid).map((c) => `${c.type} "${c.name}"`), [], "config nodes not flagged");
      for (const c of empty) assert.ok(c.errors.some((e) => /^missing [a-z]/.test(e)), `${c.type} says what is missing: ${c.errors}`);
      assert.deepEqual(configs.filter((c) => c.type === "postgres-database" && !c.valid).map((c) => c.name), []);
      // What the pane and the log show from the first deploy on, for the next test.
      await page.evaluate(() => {
        const w = window as any;
        w.gwDebug = [];
        w.RED.comms.subscribe("debug", (_topic: string, m: any) => w.gwDebug.push(m));
      });
      logFrom = red.log().length;
      // Deploy's dialog lists them (five by name, then "N more"); the user deploys anyway.
      await page.locator("#red-ui-header-button-deploy").click();
      const dialog = page.locator(".red-ui-deploy-dialog-confirm-list");
      await dialog.waitFor({ state: "visible", timeout: 10_000 });
      const listed = await dialog.locator("li").allTextContents();
      assert.ok(listed.length >= 6 && /more/.test(listed.at(-1)!), listed.join(" | "));
      await page.locator("#red-ui-deploy-dialog-confirm-deploy-deploy").click();
    });

    it("deploys with no error in the debug pane or the runtime log, only statuses that say what to set", async () => {
      await page.waitForFunction(() => !(window as any).RED.nodes.dirty(), undefined, { timeout: 30_000 });
      // Every node using an empty config node settles on a status (checked in the next test), and
      // each timer that would fail has run once: the mail outbox retries every 10 s, Graph polls at deploy.
      const start = Date.now();
      await page.waitForFunction(() => {
        let settled = true;
        (window as any).RED.nodes.eachNode((n: any) => {
          if (["graph-ooo-status", "mail-relay", "teamleader-query"].includes(n.type) && !/^missing /.test(n.status?.text ?? "")) settled = false;
        });
        return settled;
      }, undefined, { timeout: 30_000 });
      while (Date.now() - start < 12_000) await new Promise((r) => setTimeout(r, 500));
      const log = red.log().slice(logFrom);
      assert.doesNotMatch(log, /missing (node )?types?|Waiting for missing types/i, log);
      // An error or warning of a node, or what a Catch node passed on to its debug node.
      const shipped = [...shippedExamples().values()].flat();
      const caught = new Set(shipped.filter((n) => n.type === "catch").flatMap((n) => (n.wires as string[][]).flat()));
      const shown = (await page.evaluate(() => (window as any).gwDebug)) as Array<{ level?: number; name?: string; msg?: string; id?: string }>;
      const errors = shown.filter((m) => m.level === 20 || m.level === 30 || caught.has(m.id ?? ""));
      assert.deepEqual(
        { log: log.split("\n").filter((l) => /\[error\]/.test(l)), pane: errors.map((m) => `${m.level ?? "debug"} ${m.name ?? m.id}: ${String(m.msg).slice(0, 200)}`) },
        { log: [], pane: [] },
        "errors in the runtime log and the debug pane",
      );
    });

    it("shows, on every node whose config node has empty credentials, a status that names what is missing", async () => {
      const packageTypes = new Set(ALL_TYPES);
      const needsCredentials = (types: string[]) => types.some((t) => t !== "postgres-database");
      const read = async () => {
        const all = (await page.evaluate(() => {
          const RED = (window as any).RED;
          const out: Array<{ id: string; type: string; name: string; status?: { fill?: string; text?: string }; configTypes: string[] }> = [];
          RED.nodes.eachNode((n: any) => {
            const configTypes = Object.keys(n._def?.defaults ?? {})
              .filter((p) => n._def.defaults[p].type && RED.nodes.getType(n._def.defaults[p].type)?.category === "config" && n[p])
              .map((p) => RED.nodes.node(n[p])?.type)
              .filter(Boolean);
            out.push({ id: n.id, type: n.type, name: n.name ?? "", status: n.status, configTypes });
          });
          return out;
        })) as Array<{ id: string; type: string; name: string; status?: { fill?: string; text?: string }; configTypes: string[] }>;
        return all.filter((n) => packageTypes.has(n.type) && needsCredentials(n.configTypes));
      };
      const deadline = Date.now() + 20_000;
      let statuses = await read();
      // A node busy at deploy (an inject that fires once) ends on its setup error: wait for it.
      while (statuses.some((n) => !/^missing /.test(n.status?.text ?? "")) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 250));
        statuses = await read();
      }
      assert.ok(statuses.length >= 15, `${statuses.length} nodes checked`);
      const unnamed = statuses.filter((n) => !/^missing [a-z]/i.test(n.status?.text ?? ""));
      assert.deepEqual(
        unnamed.map((n) => `${n.type} '${n.name}': ${n.status?.text ?? "(no status)"}`),
        [],
        "each status names the missing field",
      );
      await page.evaluate(() => (window as any).RED.workspaces.show("gw-calllogs-tab"));
      await page.waitForTimeout(300);
    });

    it("opens the main node of each example with its own settings, every dropdown option whole", async () => {
      const shots: Record<string, string> = {
        "gw-calllogs-goto": "dialog-call-logs.png",
        "gw-provisioning-batch": "dialog-provisioning.png",
        "tl-sync": "dialog-teamleader.png",
        "ooo-monitor": "dialog-out-of-office.png",
        "mail-relay-relay": "dialog-mail-relay.png",
        "board-node": "dialog-board.png",
      };
      const cut: string[] = [];
      for (const [id, file] of Object.entries(shots)) {
        await page.evaluate((id) => {
          const RED = (window as any).RED;
          const n = RED.nodes.node(id);
          RED.workspaces.show(n.z);
          RED.editor.edit(n);
        }, id);
        await page.locator("#dialog-form").waitFor({ state: "visible" });
        await page.waitForTimeout(400);
        cut.push(...(await page.evaluate(cutOffScript, "#dialog-form")).map((c: string) => `${id} ${c}`));
        const tray = await page.locator(".red-ui-tray").last().boundingBox();
        await screenshot(page, file, tray ?? undefined);
        await page.locator("#node-dialog-cancel").click();
        await page.locator("#dialog-form").waitFor({ state: "detached" }).catch(() => undefined);
      }
      assert.deepEqual(cut, []);
    });
  });

  it("gives every node's help an Example with a code block, and no inline code wider than the sidebar at its default width", async () => {
    const problems: string[] = [];
    for (const type of ALL_TYPES) {
      await page.evaluate((type) => {
        for (const old of document.querySelectorAll(".gw-help")) old.setAttribute("data-shown", "before");
        (window as any).RED.sidebar.help.show(type);
      }, type);
      await page.waitForFunction(() => [...document.querySelectorAll(".gw-help:not([data-shown])")].some((h: any) => h.offsetParent !== null), undefined, { timeout: 10_000 });
      const seen = await page.evaluate(() => {
        const help = [...document.querySelectorAll(".gw-help:not([data-shown])")].find((h: any) => h.offsetParent !== null)!;
        const room = help.getBoundingClientRect().right;
        const headings = [...help.querySelectorAll("h3")].map((h: any) => h.textContent.trim());
        const example = [...help.querySelectorAll("h3")].find((h: any) => h.textContent.trim() === "Example");
        let block = false;
        for (let el = example?.nextElementSibling; el && el.tagName !== "H3"; el = el.nextElementSibling) if (el.tagName === "PRE" && el.textContent.trim()) block = true;
        const wide = [...help.querySelectorAll("code")]
          .filter((c: any) => !c.closest("pre") && [...c.getClientRects()].some((r: any) => r.right > room + 1))
          .map((c: any) => c.textContent);
        return { headings, block, wide, sidebar: Math.round(help.getBoundingClientRect().width) };
      });
      if (!seen.headings.includes("Example")) problems.push(`${type}: no Example`);
      else if (!seen.block) problems.push(`${type}: no code block under Example`);
      for (const w of seen.wide) problems.push(`${type}: inline code cut at ${seen.sidebar} px: ${w}`);
    }
    assert.deepEqual(problems, []);
  });

  describe("every node's dialog", () => {
    interface Field {
      id: string;
      kind: "text" | "password" | "textarea" | "select" | "checkbox" | "typed";
      secret?: boolean;
      value: string | boolean;
    }
    const typed = new Map<string, { type: string; fields: Field[] }>();

    /** Opens the edit dialog of a node or config node and waits for its form. */
    async function openDialog(id: string): Promise<string> {
      const form = await page.evaluate((id) => {
        const RED = (window as any).RED;
        const n = RED.nodes.node(id);
        if (n._def.category === "config") {
          RED.editor.editConfig("", n.type, n.id);
          return "#node-config-dialog-edit-form";
        }
        RED.editor.edit(n);
        return "#dialog-form";
      }, id);
      await page.locator(form).waitFor({ state: "visible" });
      await page.waitForTimeout(300);
      return form;
    }

    async function closeDialog(form: string): Promise<void> {
      await page.locator(form === "#dialog-form" ? "#node-dialog-ok" : "#node-config-dialog-ok").click();
      await page.locator(form).waitFor({ state: "detached" }).catch(() => undefined);
      await page.waitForTimeout(200);
    }

    /** The form's own fields (ids node-input-* / node-config-input-*), as the user sees them now. */
    function listFields(form: string) {
      return page.evaluate((form) => {
        const $ = (window as any).$;
        const out: Array<{ id: string; kind: string; secret: boolean; visible: boolean; options: string[]; current: string | boolean; configRef: boolean; placeholder: string }> = [];
        const RED = (window as any).RED;
        for (const el of document.querySelectorAll(`${form} input[id], ${form} select[id], ${form} textarea[id]`)) {
          if (!/^node-(config-)?input-/.test(el.id) || el.type === "hidden") continue;
          const typedInput = !!$(el).data("noderedTypedInput");
          const box = typedInput ? $(el).next(".red-ui-typedInput-container")[0] ?? el.parentElement : el;
          const visible = !!box && box.offsetParent !== null;
          const kind = typedInput ? "typed" : el.tagName === "SELECT" ? "select" : el.tagName === "TEXTAREA" ? "textarea" : el.type === "checkbox" ? "checkbox" : el.type === "password" ? "password" : "text";
          const prop = el.id.replace(/^node-(config-)?input-/, "");
          const editing = RED.editor.getEditStack?.().at(-1);
          const def = editing?._def?.defaults?.[prop];
          out.push({
            id: el.id,
            kind,
            // A password credential comes back to the editor as a placeholder, never as itself.
            secret: editing?._def?.credentials?.[prop]?.type === "password",
            visible,
            options: kind === "select" ? [...el.options].map((o: any) => o.value) : [],
            current: kind === "checkbox" ? el.checked : kind === "typed" ? $(el).typedInput("value") : el.value,
            placeholder: el.getAttribute("placeholder") ?? "",
            configRef: !!(def?.type && RED.nodes.getType(def.type)?.category === "config") || (kind === "select" && [...el.options].some((o: any) => o.value === "_ADD_")),
          });
        }
        return out;
      }, form);
    }

    /** A value for a text field that its validator accepts: the node's own check decides. */
    function valueFor(form: string, id: string, kind: string, current: string) {
      return page.evaluate(
        ({ form, id, kind, current }) => {
          const RED = (window as any).RED;
          const node = RED.editor.getEditStack?.().at(-1);
          const prop = id.replace(/^node-(config-)?input-/, "");
          const def = node?._def?.defaults?.[prop] ?? node?._def?.credentials?.[prop];
          const el = document.querySelector(`${form} #${id}`);
          const candidates: string[] = [];
          if (kind === "password") candidates.push("q8Jd1uP0mZ7sV3xT9bL5nW2cR6yH4kA0fG8eQ1iO3tU=");
          if (kind === "textarea") candidates.push("alpha;one\nbeta;two");
          if (/^\d+$/.test(current)) candidates.push(String(Number(current) + 1), String(Math.max(1, Number(current) - 1)));
          candidates.push("7", `${prop}-value`, "https://example.test/" + prop, "Europe/Brussels", "ops@example.test", "reports/{date}.csv", "a1b2c3");
          const placeholder = (el?.getAttribute("placeholder") ?? "").split(/[ ,(]/)[0];
          if (placeholder) candidates.push(placeholder);
          const accepts = (v: string) => {
            if (!def?.validate) return true;
            try {
              return def.validate.call(node, v, {}) === true;
            } catch {
              return false;
            }
          };
          return candidates.find(accepts) ?? `${prop}-value`;
        },
        { form, id, kind, current },
      );
    }

    /** Options a select shows that its width cuts off. */
    function cutOffOptions(form: string): Promise<string[]> {
      return page.evaluate(cutOffScript, form);
    }

    before(async () => {
      const defs = await page.evaluate((types) => {
        const RED = (window as any).RED;
        return types.map((t) => {
          const d = RED.nodes.getType(t);
          const refs: Record<string, string> = {};
          for (const [p, v] of Object.entries<any>(d.defaults ?? {})) if (v.type && RED.nodes.getType(v.type)?.category === "config") refs[p] = v.type;
          return { type: t, config: d.category === "config", refs };
        });
      }, ALL_TYPES);
      const flow: Array<Record<string, unknown>> = [{ id: "rt-tab", type: "tab", label: "round trip" }];
      defs.forEach((d, i) => {
        const refs = Object.fromEntries(Object.entries(d.refs).map(([p, t]) => [p, `rt-${t}`]));
        flow.push(d.config ? { id: `rt-${d.type}`, type: d.type, ...refs } : { id: `rt-${d.type}`, type: d.type, z: "rt-tab", x: 200 + (i % 2) * 300, y: 60 + i * 40, wires: [], ...refs });
      });
      await red.deploy(flow);
      await openEditor();
    });

    it("shows every dropdown option whole, and keeps every value typed in, after a deploy and a reload", async () => {
      const cut: string[] = [];
      for (const type of ALL_TYPES) {
        const id = `rt-${type}`;
        const form = await openDialog(id);
        const fields: Field[] = [];
        // Selects first: they show and hide the rows below them.
        for (const f of await listFields(form)) {
          if (f.kind !== "select" || !f.visible || f.configRef) continue;
          const other = [...f.options].reverse().find((o) => o !== f.current && o !== "");
          if (!other) continue;
          await page.locator(`${form} #${f.id}`).selectOption(other);
          await page.waitForTimeout(100);
          fields.push({ id: f.id, kind: "select", value: other });
        }
        cut.push(...(await cutOffOptions(form)).map((c) => `${type} ${c}`));
        for (const f of await listFields(form)) {
          if (!f.visible || f.kind === "select") continue;
          if (f.kind === "checkbox") {
            await page.locator(`${form} #${f.id}`).click();
            fields.push({ id: f.id, kind: "checkbox", value: !f.current });
          } else if (f.kind === "typed") {
            const value = await valueFor(form, f.id, "text", String(f.current));
            await page.evaluate(({ id, value }) => (window as any).$(`#${id}`).typedInput("value", value), { id: f.id, value });
            fields.push({ id: f.id, kind: "typed", value });
          } else {
            const value = await valueFor(form, f.id, f.kind, String(f.current));
            await page.locator(`${form} #${f.id}`).fill(value);
            fields.push({ id: f.id, kind: f.kind as Field["kind"], secret: f.secret, value });
          }
        }
        typed.set(id, { type, fields });
        await closeDialog(form);
      }
      assert.deepEqual(cut, [], "dropdown options cut off");
      await deployInEditor();
      await openEditor();
      // Deployed and set up: no config node is flagged, though the editor has not loaded its credentials.
      const flagged = await page.evaluate(() => {
        const out: string[] = [];
        (window as any).RED.nodes.eachConfig((n: any) => {
          if (!String(n.id).startsWith("rt-")) return;
          (window as any).RED.editor.validateNode(n);
          for (const e of n.validationErrors ?? []) if (/^missing /.test(e)) out.push(`${n.type}: ${e}`);
        });
        return out;
      });
      assert.deepEqual(flagged, [], "configured config nodes flagged after a reload");

      const lost: string[] = [];
      for (const [id, { type, fields }] of typed) {
        const form = await openDialog(id);
        const now = await listFields(form);
        for (const f of fields) {
          const seen = now.find((n) => n.id === f.id);
          const value = seen?.current;
          // A kept secret shows as the editor's placeholder in a one-line field, as a note in a text area.
          const keptSecret = f.kind === "textarea" ? value === "" && /^kept/.test(seen?.placeholder ?? "") : value === "__PWRD__";
          const kept = f.secret ? value === f.value || keptSecret : value === f.value;
          if (!kept) lost.push(`${type} ${f.id}: typed ${JSON.stringify(f.value)}, reopened ${JSON.stringify(value)}`);
        }
        await closeDialog(form);
      }
      assert.ok([...typed.values()].reduce((n, t) => n + t.fields.length, 0) > 80, "fields were filled");
      assert.deepEqual(lost, [], "values lost in the round trip");
    });

    it("keeps each line of the pipeline-alerts rules after a deploy and a reload", async () => {
      let form = await openDialog("rt-pipeline-alerts");
      await page.evaluate(() => {
        const list = (window as any).$("#node-input-rule-container");
        list.editableList("empty");
        list.editableList("addItem", {});
        list.editableList("addItem", {});
      });
      const rows = page.locator(`${form} #node-input-rule-container > li`);
      await rows.nth(0).locator(".gw-rule-scope").selectOption("node");
      await rows.nth(0).locator(".gw-rule-match").fill("gw-calllogs-goto");
      await rows.nth(0).locator(".gw-rule-to").fill("telephony@example.test");
      await rows.nth(0).locator(".gw-rule-every").fill("24h");
      await rows.nth(0).locator(".gw-rule-grace").fill("2h");
      await rows.nth(1).locator(".gw-rule-scope").selectOption("pipeline");
      await rows.nth(1).locator(".gw-rule-match").fill("teamleader-sync");
      await closeDialog(form);
      await deployInEditor();
      await openEditor();
      form = await openDialog("rt-pipeline-alerts");
      const seen = await page.evaluate((form) =>
        [...document.querySelectorAll(`${form} #node-input-rule-container > li`)].map((li) => {
          const value = (c: string) => (li.querySelector(c) as unknown as { value: string }).value;
          return { scope: value(".gw-rule-scope"), match: value(".gw-rule-match"), to: value(".gw-rule-to"), every: value(".gw-rule-every"), grace: value(".gw-rule-grace"), matchShown: (li.querySelector(".gw-rule-match") as unknown as { offsetParent: unknown }).offsetParent !== null };
        }), form);
      await closeDialog(form);
      assert.deepEqual(seen, [
        { scope: "node", match: "gw-calllogs-goto", to: "telephony@example.test", every: "24h", grace: "2h", matchShown: true },
        { scope: "pipeline", match: "teamleader-sync", to: "", every: "", grace: "", matchShown: true },
      ]);
    });
  });

  describe("an old flow, saved before the users fields were renamed", () => {
    // Version 1 of both nodes kept their list as `users`, a name the editor keeps for itself.
    const oldFlow = (suffix: string, z: string) => [
      { id: `old-board-${suffix}`, type: "connection-board", z, x: 200, y: 80, name: "old board", connections: "vpn a;one", users: "Burt\nJimmy", wires: [[], [], []] },
      { id: `old-ooo-${suffix}`, type: "graph-ooo-status", z, x: 200, y: 160, name: "old monitor", users: "ann@contoso.test\nbob@contoso.test", interval: "3600", wires: [[], [], [], []] },
    ];
    const kept = (n: any) => ({ type: n.type, boardUsers: n.boardUsers, watchedUsers: n.watchedUsers, users: n.users, version: n.version });
    const expected = (type: string) =>
      type === "connection-board"
        ? { type, boardUsers: "Burt\nJimmy", watchedUsers: undefined, users: undefined, version: 2 }
        : { type, boardUsers: undefined, watchedUsers: "ann@contoso.test\nbob@contoso.test", users: undefined, version: 2 };

    async function deployedFlows(): Promise<any[]> {
      const res = await request(`${red.url}/flows`, { headers: { "node-red-api-version": "v1" } });
      return (await res.body.json()) as any[];
    }

    it("keeps its users when opened in the editor and redeployed from it", async () => {
      await red.deploy([{ id: "old-tab", type: "tab", label: "old" }, ...oldFlow("opened", "old-tab")]);
      await openEditor();
      const inEditor = await page.evaluate(() => ["old-board-opened", "old-ooo-opened"].map((id) => {
        const n = (window as any).RED.nodes.node(id);
        return { type: n.type, boardUsers: n.boardUsers, watchedUsers: n.watchedUsers, users: n.users, version: n.version };
      }));
      assert.deepEqual(inEditor, [expected("connection-board"), expected("graph-ooo-status")]);
      await page.evaluate(() => (window as any).RED.nodes.dirty(true));
      await deployInEditor();
      const saved = (await deployedFlows()).filter((n) => String(n.id).endsWith("-opened")).map(kept);
      assert.deepEqual(saved, [expected("connection-board"), expected("graph-ooo-status")]);
    });

    it("keeps its users when pasted through Import › Clipboard and deployed", async () => {
      await page.evaluate(() => (window as any).RED.actions.invoke("core:show-import-dialog"));
      await page.locator("#red-ui-clipboard-dialog-import-text").waitFor({ state: "visible" });
      const text = page.locator("#red-ui-clipboard-dialog-import-text");
      await text.fill(JSON.stringify(oldFlow("pasted", "old-tab").map(({ z: _z, ...n }) => n)));
      await text.press("End"); // the dialog checks the text on a key, as when a person pastes it
      await page.locator("#red-ui-clipboard-dialog-ok").click();
      await page.locator("#red-ui-clipboard-dialog").waitFor({ state: "hidden" }).catch(() => undefined);
      await page.mouse.click(700, 450);
      const pasted = await page.evaluate(() => {
        const out: any[] = [];
        (window as any).RED.nodes.eachNode((n: any) => {
          if (n.name === "old board" || n.name === "old monitor") out.push({ id: n.id, type: n.type, boardUsers: n.boardUsers, watchedUsers: n.watchedUsers, users: n.users, version: n.version });
        });
        return out.filter((n) => !String(n.id).endsWith("-opened"));
      });
      assert.deepEqual(pasted.map(({ id: _id, ...n }) => n).sort((a, b) => a.type.localeCompare(b.type)), [expected("connection-board"), expected("graph-ooo-status")]);
      await deployInEditor();
      const ids = new Set(pasted.map((n) => n.id));
      const saved = (await deployedFlows()).filter((n) => ids.has(n.id)).map(kept).sort((a, b) => a.type.localeCompare(b.type));
      assert.deepEqual(saved, [expected("connection-board"), expected("graph-ooo-status")]);
    });
  });
});
