import { migrateConfig } from "../core/node/migrate";
import type { Node, NodeAPI, NodeDef } from "../core/node/types";
import { AzureStorageAccount, AzureStorageProvider, StorageAuth } from "../blob/azure";
import { checkStorage } from "../blob/connection-check";
import { registerConnectionTest } from "../core/node/connection-test";

interface AzureStorageDef extends NodeDef {
  auth?: StorageAuth;
  accountName?: string;
  endpoint?: string;
}

type Credentials = { accountKey?: string; connectionString?: string; sasUrl?: string };

export = function register(RED: NodeAPI) {
  function AzureStorageAccountNode(this: Node<Credentials> & AzureStorageProvider, def: AzureStorageDef) {
    RED.nodes.createNode(this, def);
    const config = migrateConfig(def, []);
    const creds = this.credentials ?? {};
    let account: AzureStorageAccount | undefined;
    // Made on first use, so a setup mistake reaches the writer's Catch node instead of the log.
    this.account = () =>
      (account ??= new AzureStorageAccount({
        auth: config.auth ?? "key",
        accountName: config.accountName?.trim(),
        endpoint: config.endpoint?.trim() || undefined,
        accountKey: creds.accountKey?.trim(),
        connectionString: creds.connectionString?.trim(),
        sasUrl: creds.sasUrl?.trim(),
      }));
  }

  RED.nodes.registerType("azure-storage-account", AzureStorageAccountNode, {
    credentials: { accountKey: { type: "password" }, connectionString: { type: "password" }, sasUrl: { type: "password" } },
  });
  registerConnectionTest(RED, {
    type: "azure-storage-account",
    destination: ["auth", "accountName", "endpoint"],
    secrets: ["accountKey", "connectionString", "sasUrl"],
    run: (input, checks) => {
      const config = input.config as AzureStorageDef;
      const creds = input.credentials;
      // The containers the blob nodes of this account write and read, and one typed beside the button.
      const containers = [input.options.container ?? ""];
      RED.nodes.eachNode((n) => n.storage === input.id && typeof n.container === "string" && containers.push(n.container));
      const settings = { auth: config.auth ?? "key", accountName: config.accountName?.trim(), endpoint: config.endpoint?.trim() || undefined, accountKey: creds.accountKey?.trim(), connectionString: creds.connectionString?.trim(), sasUrl: creds.sasUrl?.trim() };
      return checkStorage(settings, containers, checks);
    },
  });
};
