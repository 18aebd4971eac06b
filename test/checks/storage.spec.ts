import assert from "node:assert/strict";
import { BlobServiceClient, ContainerSASPermissions, StorageSharedKeyCredential, generateBlobSASQueryParameters } from "@azure/storage-blob";
import azureStorageAccount from "../../src/nodes/azure-storage-account";
import blobCsvWriter from "../../src/nodes/blob-csv-writer";
import { PROBE_PREFIX } from "../../src/blob/connection-check";
import { AZURITE_ACCOUNT, Azurite } from "../../src/sandbox/azurite";
import { nodeRed } from "../support/node-red";
import { expectLine, testConnection } from "./report";

const helper = nodeRed();

describe("azure-storage-account connection test", function () {
  this.timeout(60_000);
  const azurite = new Azurite();
  let service: BlobServiceClient;
  before(async () => {
    await azurite.start();
    service = BlobServiceClient.fromConnectionString(azurite.connectionString);
    await service.getContainerClient("existing").create();
  });
  after(() => azurite.stop());
  afterEach(() => helper.unload());

  const keyAuth = () => ({ config: { auth: "key", accountName: AZURITE_ACCOUNT.name, endpoint: azurite.blobUrl }, credentials: { accountKey: AZURITE_ACCOUNT.key } });
  const containerSas = (container: string, permissions: string) => {
    const sas = generateBlobSASQueryParameters(
      { containerName: container, permissions: ContainerSASPermissions.parse(permissions), expiresOn: new Date(Date.now() + 3600_000) },
      new StorageSharedKeyCredential(AZURITE_ACCOUNT.name, AZURITE_ACCOUNT.key),
    ).toString();
    return `${azurite.blobUrl}/${container}?${sas}`;
  };
  const probes = async (container: string) => {
    const names: string[] = [];
    for await (const b of service.getContainerClient(container).listBlobsFlat({ prefix: PROBE_PREFIX })) names.push(b.name);
    return names;
  };

  it("finds the container, stages, lists and deletes a probe blob, and leaves nothing behind", async () => {
    await helper.load(azureStorageAccount, []);
    const report = await testConnection("azure-storage-account", { id: "s1", ...keyAuth(), options: { container: "existing" } });
    expectLine(report, "container 'existing'", "passed", /exists/);
    expectLine(report, "stage a block in 'existing'", "passed", new RegExp(PROBE_PREFIX.replace(".", "\\.")));
    expectLine(report, "list the probe blob in 'existing'", "passed");
    expectLine(report, "delete the probe blob in 'existing'", "passed");
    assert.equal(report.ok, true);
    assert.deepEqual(await probes("existing"), []);
  });

  it("creates a container the writers name that does not exist yet", async () => {
    const flow = [
      { id: "s1", type: "azure-storage-account", ...keyAuth().config },
      { id: "w1", type: "blob-csv-writer", storage: "s1", container: "made-by-test", wires: [] },
    ];
    await helper.load([azureStorageAccount, blobCsvWriter], flow, { s1: keyAuth().credentials });
    const report = await testConnection("azure-storage-account", { id: "s1", config: keyAuth().config, credentials: { accountKey: "__PWRD__" } });
    expectLine(report, "container 'made-by-test'", "passed", /created/);
    assert.ok(await service.getContainerClient("made-by-test").exists());
  });

  it("fails the write with a read-only SAS, and says which permissions it needs", async () => {
    await helper.load(azureStorageAccount, []);
    const report = await testConnection("azure-storage-account", { id: "s1", config: { auth: "sas" }, credentials: { sasUrl: containerSas("existing", "rl") } });
    expectLine(report, "stage a block in 'existing'", "failed", /lacks the permission \(403[\s\S]*racwld/);
    expectLine(report, "list the probe blob in 'existing'", "skipped");
    assert.equal(report.ok, false);
    assert.doesNotMatch(JSON.stringify(report), /sig=[^\[]/, "the SAS signature stays out of the report");
  });

  it("fails the delete with a SAS that may write but not delete", async () => {
    await helper.load(azureStorageAccount, []);
    const report = await testConnection("azure-storage-account", { id: "s1", config: { auth: "sas" }, credentials: { sasUrl: containerSas("existing", "racwl") } });
    expectLine(report, "stage a block in 'existing'", "passed");
    expectLine(report, "delete the probe blob in 'existing'", "failed", /403/);
  });

  it("fails the container for a wrong account key", async () => {
    await helper.load(azureStorageAccount, []);
    const wrong = Buffer.from("not the key of this account at all, 64 bytes long................").toString("base64");
    const report = await testConnection("azure-storage-account", { id: "s1", config: keyAuth().config, credentials: { accountKey: wrong }, options: { container: "existing" } });
    expectLine(report, "container 'existing'", "failed", /refused the credential[\s\S]*wrong or expired[\s\S]*copy the access key/);
  });

  it("skips the container checks when no container is known", async () => {
    await helper.load(azureStorageAccount, []);
    const report = await testConnection("azure-storage-account", { id: "s1", ...keyAuth() });
    expectLine(report, "container", "skipped", /no container is known/);
  });

  it("answers a test message on a blob-csv-writer node with the report, writing no CSV", async () => {
    const flow = [
      { id: "s1", type: "azure-storage-account", ...keyAuth().config },
      { id: "w1", type: "blob-csv-writer", storage: "s1", container: "existing", wires: [["out"]] },
      { id: "out", type: "helper" },
    ];
    await helper.load([azureStorageAccount, blobCsvWriter], flow, { s1: keyAuth().credentials });
    const left = (await probes("existing")).length; // the no-delete SAS test leaves one
    const got = new Promise<any>((resolve) => helper.getNode("out").on("input", resolve));
    helper.getNode("w1").receive({ topic: "test" } as never);
    const msg = await got;
    assert.equal(msg.payload.ok, true, JSON.stringify(msg.payload));
    expectLine(msg.payload.reports[0], "delete the probe blob in 'existing'", "passed");
    const all: string[] = [];
    for await (const b of service.getContainerClient("existing").listBlobsFlat()) all.push(b.name);
    assert.deepEqual(all.filter((n) => !n.startsWith(PROBE_PREFIX)), [], "no CSV was written");
    assert.equal((await probes("existing")).length, left);
  });
});
