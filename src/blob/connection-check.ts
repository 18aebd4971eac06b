import { randomBytes } from "node:crypto";
import { ContainerClient, RestError } from "@azure/storage-blob";
import { CHECK_RESPONSE_MAX_BYTES, CheckFailure, ConnectionChecks, hostOf, isNetworkFailure, unresolvedHost, untrustedCertificate } from "../core/check-report";
import { AzureStorageAccount, StorageAccountSettings } from "./azure";

/** Probe blobs live under this prefix only, so a test never touches a pipeline's files. */
export const PROBE_PREFIX = ".gluework-connection-test/";

const PERMISSION_FIX = "give the access key, or a SAS with read, add, create, write, list and delete (racwld), to this node";

/**
 * The azure-storage-account node's checks, per container the pipelines use: it exists or can be
 * created, a block can be staged (and committed), the probe blob listed and deleted again.
 */
export async function checkStorage(settings: StorageAccountSettings, containers: string[], checks: ConnectionChecks): Promise<void> {
  const account = await checks.run("account settings", "fill in the account name and key, the connection string or the SAS URL", async () => new AzureStorageAccount(settings, { maxResponseBytes: CHECK_RESPONSE_MAX_BYTES }), (a) => `account ${a.accountName || "(from the SAS URL)"}`);
  if (!account) return;
  let names = [...new Set(containers.map((c) => c.trim()).filter(Boolean))];
  let client: ContainerClient | undefined;
  try {
    client = account.container(undefined); // a container SAS names its own
    names = [client.containerName];
  } catch {
    // an account-level credential: the containers the flows name
  }
  if (!names.length) {
    checks.skip("container", "no container is known: no blob node uses this account yet; give one in the test's container field");
    return;
  }
  for (const name of names) {
    let container: ContainerClient;
    try {
      container = client ?? account.container(name);
    } catch (err) {
      checks.fail(`container '${name}'`, (err as Error).message, "use an account SAS, or the SAS of this container");
      continue;
    }
    await checkContainer(container, !!client, checks);
  }
}

async function checkContainer(container: ContainerClient, containerSas: boolean, checks: ConnectionChecks): Promise<void> {
  const name = container.containerName;
  checks.service(hostOf(container.url));
  const options = { abortSignal: checks.signal };
  const ready = await checks.run(`container '${name}'`, PERMISSION_FIX, async () => {
    try {
      if (await container.exists(options)) return "exists";
    } catch (err) {
      // A container SAS may not read the container's properties: the blob checks below tell more.
      if (!(containerSas && err instanceof RestError && err.statusCode === 403 && !["AuthenticationFailed", "AuthorizationFailure"].includes(errorCode(err)))) throw explain(err, "look for the container");
      return "reachable (this credential may not read the container's properties)";
    }
    try {
      await container.create(options);
    } catch (err) {
      throw explain(err, "create the container");
    }
    return "created";
  });
  const steps = [`stage a block in '${name}'`, `list the probe blob in '${name}'`, `delete the probe blob in '${name}'`];
  if (!ready) return checks.skipAll(steps, "the container is not usable");
  const blob = container.getBlockBlobClient(`${PROBE_PREFIX}${new Date().toISOString().replace(/[:.]/g, "-")}-${randomBytes(4).toString("hex")}.txt`);
  const staged = await checks.run(steps[0]!, PERMISSION_FIX, async () => {
    const blockId = Buffer.from("probe-000001").toString("base64");
    const body = Buffer.from("connection test probe; safe to delete\n");
    try {
      await blob.stageBlock(blockId, body, body.length, options);
      await blob.commitBlockList([blockId], options);
    } catch (err) {
      throw explain(err, "write a blob");
    }
    return `staged and committed ${blob.name}`;
  });
  if (!staged) return checks.skipAll(steps.slice(1), "no probe blob was written");
  await checks.run(steps[1]!, PERMISSION_FIX, async () => {
    try {
      for await (const item of container.listBlobsFlat({ prefix: blob.name, abortSignal: checks.signal })) {
        if (item.name === blob.name) return "found";
      }
    } catch (err) {
      throw explain(err, "list blobs");
    }
    throw new CheckFailure("the probe blob was written but a listing does not show it", "check that nothing else deletes blobs in this container");
  });
  await checks.run(steps[2]!, PERMISSION_FIX, async () => {
    try {
      await blob.delete({ abortSignal: checks.signal });
    } catch (err) {
      throw explain(err, `delete ${blob.name} (delete it by hand)`);
    }
    return "deleted";
  });
}

function errorCode(err: RestError): string {
  return (err as RestError & { details?: { errorCode?: string } }).details?.errorCode ?? err.code ?? "";
}

function explain(err: unknown, what: string): Error {
  // The network's failures read alike, and a certificate or DNS failure is named: the test does both.
  if (!(err instanceof RestError) || isNetworkFailure(err) || untrustedCertificate(err) || unresolvedHost(err) !== undefined) return err as Error;
  const code = errorCode(err);
  if (err.statusCode === 403 && (code === "AuthenticationFailed" || code === "AuthorizationFailure" || code === "")) {
    return new CheckFailure(`Azure Storage refused the credential to ${what} (403${code ? ` ${code}` : ""}): the key, connection string or SAS is wrong or expired`, "copy the access key, connection string or SAS URL again from the storage account in the Azure portal");
  }
  if (err.statusCode === 403) {
    return new CheckFailure(`Azure Storage refused to ${what}: this credential lacks the permission (403 ${code})`, PERMISSION_FIX);
  }
  if (!err.statusCode) return new CheckFailure(`Azure Storage could not be reached to ${what}: ${err.message.split("\n")[0]}`, "check the account name or blob endpoint, and that Node-RED can reach it");
  return new CheckFailure(`Azure Storage refused to ${what}: ${err.statusCode} ${code}`, PERMISSION_FIX);
}
