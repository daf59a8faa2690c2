// A FIFO of addresses that is plain JSON ({ items, head }) so it lives inside
// the durable state as is. Taking from the front only moves `head`; consumed
// slots are dropped once they are at least half the array, which keeps every
// operation amortised O(1) and the serialised form at most twice the live size.

export interface AddressQueue {
  /** items[head..] are the queued addresses, front first; items[..head) are spent */
  items: string[];
  head: number;
}

const COMPACT_AFTER = 32;

export function emptyQueue(): AddressQueue {
  return { items: [], head: 0 };
}

export function queueLength(queue: AddressQueue): number {
  return queue.items.length - queue.head;
}

export function queuePush(queue: AddressQueue, ip: string): void {
  queue.items.push(ip);
}

export function queueShift(queue: AddressQueue): string | undefined {
  if (queue.head >= queue.items.length) return undefined;
  const ip = queue.items[queue.head]!;
  queue.head++;
  if (queue.head === queue.items.length) {
    queue.items = [];
    queue.head = 0;
  } else if (queue.head >= COMPACT_AFTER && queue.head * 2 >= queue.items.length) {
    queue.items.splice(0, queue.head);
    queue.head = 0;
  }
  return ip;
}

/** The queued addresses, front first (a copy). */
export function queueValues(queue: AddressQueue): string[] {
  return queue.items.slice(queue.head);
}

export function queueReplace(queue: AddressQueue, values: string[]): void {
  queue.items = values;
  queue.head = 0;
}
