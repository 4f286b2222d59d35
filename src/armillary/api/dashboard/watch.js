// A live list of resources: list once, then follow the `resources` channel from the
// list's resourceVersion (as a Kubernetes informer does). An Expired error or a
// reconnect lists again. `onChange(map)` is called at most once per animation frame.

import * as api from "./api.js";
import * as live from "./live.js";
import { newest } from "./tenancy.js";

export async function watchKind(ctx, { kind, plural, selector, onChange }) {
  const items = new Map();
  let pending = false;
  const changed = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      onChange(items);
    });
  };
  let unsubscribe = () => {};
  const list = async () => {
    const found = await api.all(`/api/v1/${plural}`, { selector });
    items.clear();
    for (const item of found) items.set(item.metadata.name, item);
    unsubscribe();
    const payload = { kinds: [kind] };
    if (selector) payload.selector = selector;
    const rv = newest(found);
    if (rv) payload.resourceVersion = rv;
    unsubscribe = live.subscribe("resources", payload, (frame) => {
      if (frame.type === "reconnected" || (frame.type === "error" && frame.payload.code === "Expired")) {
        list().catch(console.error);
        return;
      }
      const object = frame.payload && frame.payload.object;
      if (!object || object.kind !== kind) return;
      if (frame.type === "DELETED") items.delete(object.metadata.name);
      else items.set(object.metadata.name, object);
      changed();
    });
  };
  ctx.cleanup(() => unsubscribe());
  await list();
  onChange(items);
  return items;
}
