import net from "node:net";

/**
 * What the proxy does to the traffic between Node-RED and a neighbour:
 * - pass: forwards both ways;
 * - reset: ends every connection with a TCP RST, and resets each new one at once;
 * - stall: accepts and keeps connections open but forwards nothing (reads nothing, so the bytes
 *   wait in the sockets and go on when the stall ends, as with a server that hangs for a while);
 * - black-hole: accepts and reads, and drops what it reads both ways; a connection that lost bytes
 *   is reset when the black hole ends (its stream can never be whole again);
 * - slow: forwards at `bytesPerSecond` each way;
 * - refuse: the neighbour is down: the listener is closed (connection refused) and live
 *   connections are reset.
 */
export type FaultMode = "pass" | "reset" | "stall" | "black-hole" | "slow" | "refuse";

type Direction = "up" | "down";

interface Link {
  client: net.Socket;
  upstream?: net.Socket;
  /** Bytes read and not yet forwarded, each way, in order. */
  lanes: Record<Direction, Buffer[]>;
  /** A slow write is under way that way. */
  draining: Record<Direction, boolean>;
  /** Some bytes were dropped: the link can only be reset. */
  broken: boolean;
  closed: boolean;
}

/**
 * A TCP proxy that a test controls, between Node-RED and one neighbour. A change of mode applies
 * to live connections as well as new ones. Every socket has an error listener: the proxy never
 * throws, whatever either side does.
 */
export class FaultProxy {
  private server?: net.Server;
  private readonly links = new Set<Link>();
  private current: FaultMode = "pass";
  private rate = 16 * 1024;
  port = 0;
  /** Connections accepted since the start. */
  accepted = 0;
  /** Connections that a fault touched (live when it began, or opened during it), since the start. */
  touched = 0;

  constructor(
    private readonly target: { host?: string; port: number },
    readonly name = `proxy to ${target.port}`,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get mode(): FaultMode {
    return this.current;
  }

  /** Connections open through the proxy now. */
  get open(): number {
    return this.links.size;
  }

  async start(port = 0): Promise<number> {
    await this.listen(port);
    return this.port;
  }

  /** Puts every live connection and every new one in `mode` (`bytesPerSecond` for slow). */
  async set(mode: FaultMode, options: { bytesPerSecond?: number } = {}): Promise<void> {
    const previous = this.current;
    this.current = mode;
    if (options.bytesPerSecond) this.rate = options.bytesPerSecond;
    if (mode !== "pass") this.touched += this.links.size;
    for (const link of [...this.links]) {
      if (mode === "reset" || mode === "refuse" || (previous === "black-hole" && link.broken && mode !== "black-hole")) this.reset(link);
      else this.flow(link);
    }
    // After the resets: a closing server waits for its connections to end.
    if (mode === "refuse") await this.unlisten();
    else if (!this.server) await this.listen(this.port);
  }

  /** The proxy back to pass: the fault is over. */
  heal(): Promise<void> {
    return this.set("pass");
  }

  async stop(): Promise<void> {
    for (const link of [...this.links]) this.reset(link);
    await this.unlisten();
  }

  private listen(port: number): Promise<void> {
    const server = net.createServer((socket) => this.accept(socket));
    server.on("error", () => undefined);
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.removeListener("error", reject);
        this.port = (server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  private unlisten(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return Promise.resolve();
    return new Promise((resolve) => server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    this.accepted++;
    if (this.current !== "pass") this.touched++;
    const link: Link = { client, lanes: { up: [], down: [] }, draining: { up: false, down: false }, broken: false, closed: false };
    client.on("error", () => this.close(link));
    client.on("close", () => this.close(link));
    client.on("end", () => link.upstream?.end());
    if (this.current === "reset" || this.current === "refuse") {
      client.resetAndDestroy();
      return;
    }
    this.links.add(link);
    client.on("data", (chunk: Buffer) => this.carry(link, chunk, "up"));
    this.flow(link);
  }

  /** Opens the upstream side once the link may forward. */
  private connectUpstream(link: Link): void {
    if (link.upstream || link.closed) return;
    const upstream = net.connect({ host: this.target.host ?? "127.0.0.1", port: this.target.port });
    link.upstream = upstream;
    upstream.on("error", () => this.reset(link));
    upstream.on("close", () => this.close(link));
    upstream.on("end", () => link.client.end());
    upstream.on("data", (chunk: Buffer) => this.carry(link, chunk, "down"));
    upstream.on("connect", () => this.drain(link, "up"));
    this.flow(link);
  }

  /** Sets the link's sockets reading or not, as the mode says. */
  private flow(link: Link): void {
    if (link.closed) return;
    const mode = this.current;
    if (mode === "stall") {
      link.client.pause();
      link.upstream?.pause();
      return;
    }
    if ((mode === "pass" || mode === "slow") && !link.upstream) {
      this.connectUpstream(link);
      return;
    }
    if (mode === "black-hole" && (link.lanes.up.length > 0 || link.lanes.down.length > 0)) link.broken = true;
    this.drain(link, "up");
    this.drain(link, "down");
    if (mode === "slow" && link.lanes.up.length > 0) link.client.pause();
    else link.client.resume();
    if (mode === "slow" && link.lanes.down.length > 0) link.upstream?.pause();
    else link.upstream?.resume();
  }

  private carry(link: Link, chunk: Buffer, direction: Direction): void {
    if (link.closed) return;
    if (this.current === "black-hole") {
      link.broken = true;
      return;
    }
    link.lanes[direction].push(chunk);
    this.drain(link, direction);
  }

  /** Forwards what waits in one direction, in order, at the pace the mode allows. */
  private drain(link: Link, direction: Direction): void {
    const lane = link.lanes[direction];
    const source = direction === "up" ? link.client : link.upstream;
    if (link.closed || link.draining[direction]) return;
    const mode = this.current;
    if (mode === "black-hole" && lane.length > 0) {
      lane.length = 0;
      link.broken = true;
    }
    if (mode === "stall" || lane.length === 0) return;
    const target = direction === "down" ? link.client : link.upstream;
    if (!target || target.connecting) return; // sent on connect
    if (mode !== "slow") {
      for (const chunk of lane.splice(0)) target.write(chunk);
      return;
    }
    // Slow: a tenth of a second's worth at a time, the source paused meanwhile.
    source?.pause();
    const step = Math.max(1, Math.floor(this.rate / 10));
    const head = lane[0]!;
    target.write(head.subarray(0, step));
    if (head.length > step) lane[0] = head.subarray(step);
    else lane.shift();
    link.draining[direction] = true;
    setTimeout(() => {
      link.draining[direction] = false;
      this.drain(link, direction);
      if (lane.length === 0) this.flow(link);
    }, 100).unref();
  }

  private reset(link: Link): void {
    if (link.closed) return;
    link.closed = true;
    this.links.delete(link);
    if (!link.client.destroyed) link.client.resetAndDestroy();
    if (link.upstream && !link.upstream.destroyed) link.upstream.resetAndDestroy();
  }

  private close(link: Link): void {
    if (link.closed) return;
    link.closed = true;
    this.links.delete(link);
    link.client.destroy();
    link.upstream?.destroy();
  }
}
