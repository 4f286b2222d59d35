// Nodes: capacity, live CPU and memory charts from each heartbeat, and cordon /
// uncordon for admins (the only role the API lets do it).

import * as api from "./api.js";
import * as live from "./live.js";
import { h, replace, badge, labels, when, notice } from "./dom.js";
import { Series, sparkline, percentages } from "./chart.js";

export async function render(view, ctx) {
  const message = h("div", { "aria-live": "polite" });
  const box = h("div", { class: "cards" });
  replace(view, h("h1", {}, "Nodes"), message, box);
  const charts = new Map();
  const draw = (nodes) => {
    replace(box, nodes.map((node) => {
      const chart = charts.get(node.name) || { cpu: new Series(), memory: new Series() };
      if (!charts.has(node.name)) {
        const now = percentages(node.usage);
        chart.cpu.push(now.cpu);
        chart.memory.push(now.memory);
      }
      chart.cpuLine = sparkline(chart.cpu, { label: `${node.name} CPU`, width: 320, height: 80 });
      chart.memoryLine = sparkline(chart.memory, { label: `${node.name} memory`, width: 320, height: 80, tone: "line alt" });
      charts.set(node.name, chart);
      const capacity = node.capacity || {};
      const action = node.schedulable ? "cordon" : "uncordon";
      return h("article", { class: "card", dataset: { node: node.name }, "aria-labelledby": `node-${node.name}` },
        h("h2", { id: `node-${node.name}` }, node.name, " ", badge(node.status), node.schedulable ? "" : [" ", badge("cordoned", "warn")]),
        h("dl", {},
          h("dt", {}, "Address"), h("dd", {}, node.address),
          h("dt", {}, "Capacity"), h("dd", {}, `${capacity.cpuMillicores ?? "?"}m CPU, ${capacity.memoryMb ?? "?"} MB`),
          h("dt", {}, "Replicas"), h("dd", {}, String(node.replicas)),
          h("dt", {}, "Labels"), h("dd", {}, labels(node.labels)),
          h("dt", {}, "Heartbeat"), h("dd", {}, when(node.heartbeatAt))),
        h("figure", {}, h("figcaption", {}, "CPU %"), chart.cpuLine),
        h("figure", {}, h("figcaption", {}, "Memory %"), chart.memoryLine),
        ctx.can("admin") ? h("button", { type: "button", class: "mutating", onclick: () => toggle(node.name, action) }, action === "cordon" ? "Cordon" : "Uncordon") : null,
      );
    }));
  };
  const toggle = async (name, action) => {
    try {
      await api.send("POST", `/api/v1/nodes/${encodeURIComponent(name)}/${action}`);
      replace(message, notice(`${name}: ${action}ed`, "ok"));
      const fresh = await api.all("/api/v1/nodes");
      known.clear();
      for (const n of fresh) known.set(n.name, n);
      redraw();
    } catch (error) {
      replace(message, notice(error.message));
    }
  };
  const known = new Map((await api.all("/api/v1/nodes")).map((n) => [n.name, n]));
  const redraw = () => draw([...known.values()].sort((a, b) => a.name.localeCompare(b.name)));
  redraw();
  let synced = false;
  ctx.cleanup(live.subscribe("nodes", {}, (frame) => {
    if (frame.type === "heartbeat") {
      const chart = charts.get(frame.payload.name);
      if (!chart) return;
      const now = percentages(frame.payload);
      chart.cpu.push(now.cpu);
      chart.memory.push(now.memory);
      chart.cpuLine.redraw();
      chart.memoryLine.redraw();
    } else if (frame.type === "SYNCED") {
      synced = true;
      redraw();
    } else if (frame.payload && frame.payload.node) {
      const node = frame.payload.node;
      if (frame.type === "DELETED") known.delete(node.name);
      else known.set(node.name, node);
      if (synced) redraw(); // the present state is drawn once, at SYNCED
    } else if (frame.type === "reconnected") {
      synced = false;
    }
  }));
}
