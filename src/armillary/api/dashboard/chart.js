// Sparklines and small line charts in SVG, drawn from a bounded ring of samples: a
// node's CPU and memory as its heartbeats arrive on the live feed.

const SVG = "http://www.w3.org/2000/svg";
export const SAMPLES = 60;

export class Series {
  constructor(limit = SAMPLES) {
    this.limit = limit;
    this.values = [];
  }

  push(value) {
    if (typeof value !== "number" || Number.isNaN(value)) return;
    this.values.push(value);
    if (this.values.length > this.limit) this.values.shift();
  }

  last() {
    return this.values.length ? this.values[this.values.length - 1] : null;
  }
}

/** An SVG line of `series` (0..max) in a width x height box, labelled for screen readers. */
export function sparkline(series, { label, max = 100, width = 120, height = 28, tone = "line" } = {}) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height));
  svg.setAttribute("role", "img");
  svg.setAttribute("class", `spark ${tone}`);
  const title = document.createElementNS(SVG, "title");
  svg.append(title);
  const path = document.createElementNS(SVG, "polyline");
  path.setAttribute("fill", "none");
  svg.append(path);
  const figure = document.createElement("span");
  figure.className = "spark-wrap";
  const reading = document.createElement("span");
  reading.className = "reading";
  reading.setAttribute("aria-hidden", "true");
  figure.append(svg, reading);
  const draw = () => {
    const values = series.values;
    const step = width / Math.max(series.limit - 1, 1);
    // the newest sample at the right edge; a single one is a level line across
    const offset = values.length === 1 ? 0 : Math.max(series.limit - values.length, 0);
    const points = values.map((v, i) => {
      const x = (offset + i) * step;
      const y = height - 1 - (Math.min(Math.max(v, 0), max) / max) * (height - 2);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    if (values.length === 1) points.push(`${width},${points[0].split(",")[1]}`);
    path.setAttribute("points", points.join(" "));
    const last = series.last();
    const text = `${label}: ${last === null ? "no data" : `${last.toFixed(1)}%`}`;
    title.textContent = text;
    svg.setAttribute("aria-label", text);
    reading.textContent = last === null ? "-" : `${last.toFixed(1)}%`;
  };
  draw();
  figure.redraw = draw;
  return figure;
}

/** The node's CPU and memory percentages from a heartbeat or a node's `usage`. */
export function percentages(usage) {
  if (!usage) return { cpu: null, memory: null };
  const cpu = usage.cpu ?? usage.cpuPercent ?? null;
  let memory = usage.memory ?? usage.memoryPercent ?? null;
  if (memory === null && usage.memoryUsedMb && usage.memoryTotalMb) {
    memory = (100 * usage.memoryUsedMb) / usage.memoryTotalMb;
  }
  if (memory && typeof memory === "object") {
    memory = memory.percent ?? (memory.usedMb && memory.totalMb ? (100 * memory.usedMb) / memory.totalMb : null);
  }
  return { cpu: typeof cpu === "object" && cpu ? cpu.percent ?? null : cpu, memory };
}
