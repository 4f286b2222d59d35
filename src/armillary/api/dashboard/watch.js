// A live list of resources, as a Kubernetes informer keeps one: listed once over HTTP
// for the first paint, then held by the `resources` channel, whose subscription sends
// the present state (ADDED per object, then SYNCED) and every change after it. The
// present state replaces the list at SYNCED (so objects deleted meanwhile go), and a
// reconnect or an Expired error subscribes afresh. `onChange(map)` runs at most once
// per animation frame.

import * as api from "./api.js";
import * as live from "./live.js";

export async function watchKind(ctx, { kind, plural, selector, name, onChange }) {
  let items = new Map();
  let fresh = null; // the present state while a subscription sends it
  let pending = false;
  const changed = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      onChange(items);
    });
  };
  const payload = { kinds: [kind] };
  if (selector) payload.selector = selector;
  if (name) payload.name = name;
  let unsubscribe = () => {};
  const follow = () => {
    unsubscribe();
    fresh = new Map();
    unsubscribe = live.subscribe("resources", payload, (frame) => {
      if (frame.type === "reconnected") {
        fresh = new Map();
        return;
      }
      if (frame.type === "error") {
        if (frame.payload.code === "Expired") follow();
        return;
      }
      if (frame.type === "SYNCED") {
        if (fresh) items = fresh;
        fresh = null;
        changed();
        return;
      }
      const object = frame.payload && frame.payload.object;
      if (!object || object.kind !== kind) return;
      const into = fresh || items;
      if (frame.type === "DELETED") into.delete(object.metadata.name);
      else into.set(object.metadata.name, object);
      if (!fresh) changed();
    });
  };
  ctx.cleanup(() => unsubscribe());
  const found = name ? [await api.get(`/api/v1/${plural}/${encodeURIComponent(name)}`)] : await api.all(`/api/v1/${plural}`, { selector });
  for (const item of found) items.set(item.metadata.name, item);
  follow();
  onChange(items);
  return items;
}
