// A mirror module's virtual IP (`<vip><interface_list><interface><real_interface>`): the
// addresses are added to the node's real interface (as /32) while the module is primary,
// announced by a gratuitous ARP each, and removed otherwise. The kernel answers ARP for
// them itself (unlike a farm's VIP, which the farm filter's responder answers).
//
// Never throws after construction: a failure to add or remove an address is logged (the
// module goes on; the operator sees why the VIP is not there).

import { nativeBinding, type NativeBinding } from "../../native/index.ts";
import { gratuitousArp } from "./filter.ts";

export class RealVip {
  readonly #native: NativeBinding;
  readonly #interfaceName: string;
  readonly #addrs: readonly string[];
  readonly #log: (line: string) => void;
  #up = false;

  /** Removes the addresses if a previous process left them. */
  constructor(interfaceName: string, addrs: readonly string[], log: (line: string) => void) {
    this.#native = nativeBinding();
    this.#interfaceName = interfaceName;
    this.#addrs = addrs;
    this.#log = log;
    this.#down();
  }

  get addrs(): readonly string[] {
    return this.#addrs;
  }

  set(up: boolean): void {
    if (up === this.#up) return;
    this.#up = up;
    if (up) this.#bringUp();
    else this.#down();
  }

  close(): void {
    this.set(false);
  }

  #bringUp(): void {
    try {
      const mac = this.#native.interfaceMac(this.#interfaceName);
      for (const addr of this.#addrs) {
        try {
          this.#native.addressAdd(this.#interfaceName, addr, 32);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
        }
        this.#native.sendArp(gratuitousArp(this.#interfaceName, mac, mac, addr));
      }
      this.#log(`VIP ${this.#addrs.join(" ")} up on ${this.#interfaceName} (${mac})`);
    } catch (error) {
      this.#log(`VIP up on ${this.#interfaceName} failed: ${(error as Error).message}`);
    }
  }

  #down(): void {
    for (const addr of this.#addrs) {
      try {
        this.#native.addressDelete(this.#interfaceName, addr, 32);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EADDRNOTAVAIL") this.#log(`cannot remove VIP ${addr} from ${this.#interfaceName}: ${(error as Error).message}`);
      }
    }
  }
}
