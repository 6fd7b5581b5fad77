/**
 * A small SVG chart kit for the HTML report: line charts (step or straight, linear or
 * log axes), CDFs on a log axis, grouped bar charts and page maps. Every function is
 * pure and returns one `<svg>` element as text: no browser, no scripts, no network,
 * the same input gives the same bytes.
 *
 * Accessibility: colours from the Okabe–Ito palette (distinguishable with the common
 * colour-vision deficiencies), and each series also has a dash pattern (lines) or a
 * fill pattern (bars), so charts read without colour; every chart has a `<title>`,
 * a `<desc>` and `role="img"` with `aria-labelledby`; every text is escaped.
 *
 * @module
 */

/** Okabe–Ito colours, in the order series take them (yellow left out: too light on white). */
export const SERIES_COLORS: readonly string[] = [
  "#0072B2", // blue
  "#D55E00", // vermillion
  "#009E73", // bluish green
  "#CC79A7", // reddish purple
  "#E69F00", // orange
  "#56B4E9", // sky blue
  "#000000", // black
];
/** Dash patterns of line series, in the same order ("" is solid). */
export const SERIES_DASHES: readonly string[] = [
  "",
  "9 4",
  "2 3",
  "12 3 3 3",
  "5 5",
  "1 5",
  "14 4",
];

/** How one series is drawn. */
export interface SeriesStyle {
  /** Stroke (line) or fill (bar) colour. */
  color: string;
  /** SVG `stroke-dasharray` ("" for solid). */
  dash: string;
  /** Line width in px. */
  width: number;
}

/** The style of series `i` (colours and dashes cycle together, so pairs stay distinct). */
export function seriesStyle(i: number): SeriesStyle {
  return {
    color: SERIES_COLORS[i % SERIES_COLORS.length]!,
    dash: SERIES_DASHES[i % SERIES_DASHES.length]!,
    width: 2,
  };
}

/** Escape text for XML and HTML content and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * A number as a short tick label: 1500 -> "1500", 20000 -> "20k", 3e6 -> "3M",
 * 0.25 -> "0.25"; abbreviated only when 3 digits keep it exact (10240 stays).
 */
export function formatTick(value: number): string {
  const plain = String(Number(value.toPrecision(12)));
  for (
    const [unit, scale, suffix] of [[1e9, 1e9, "G"], [1e6, 1e6, "M"], [1e4, 1e3, "k"]] as const
  ) {
    if (Math.abs(value) < unit) continue;
    const short = Number((value / scale).toPrecision(12));
    return Number(short.toPrecision(3)) === short ? `${short}${suffix}` : plain;
  }
  return plain;
}

/** One axis. */
export interface Axis {
  /** What is measured, e.g. "request size". */
  label: string;
  /** Its unit, shown in parentheses, e.g. "bytes". */
  unit: string;
  /** Scale (default "linear"). */
  scale?: "linear" | "log";
  /** Fixed lower end (default: from the data; 0 for a linear axis of non-negative data). */
  min?: number;
  /** Fixed upper end (default: from the data, rounded up to a tick). */
  max?: number;
  /** Distance between ticks of a linear axis (default: a round step giving about 6). */
  tickStep?: number;
}

/** A mapping from data to pixels with its ticks. */
interface Scale {
  map(value: number): number;
  ticks: number[];
  domain: [number, number];
}

/** A round step (1, 2 or 5 times a power of ten) giving about `count` steps over `span`. */
function niceStep(span: number, count: number): number {
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw * (1 - 1e-12))!;
}

/** The multiples of `step` in [min, max]. */
function ticksAt(min: number, max: number, step: number): number[] {
  const ticks: number[] = [];
  for (let i = Math.ceil(min / step - 1e-9); i * step <= max + step * 1e-9; i++) {
    ticks.push(Number((i * step).toPrecision(12)));
  }
  return ticks;
}

/** About `count` round ticks covering [min, max] (steps of 1, 2 or 5 times a power of ten). */
export function niceTicks(min: number, max: number, count = 6): number[] {
  return max > min ? ticksAt(min, max, niceStep(max - min, count)) : [min];
}

/** Powers of ten in [min, max] (with 2x and 5x between them when there are fewer than 3). */
export function logTicks(min: number, max: number): number[] {
  const lo = Math.floor(Math.log10(min)), hi = Math.ceil(Math.log10(max));
  const within = (v: number) => v >= min * (1 - 1e-9) && v <= max * (1 + 1e-9);
  const powers: number[] = [];
  for (let e = lo; e <= hi; e++) if (within(10 ** e)) powers.push(10 ** e);
  if (powers.length >= 3) return powers;
  const more: number[] = [];
  for (let e = lo; e <= hi; e++) {
    for (const m of [1, 2, 5]) {
      if (within(m * 10 ** e)) more.push(Number((m * 10 ** e).toPrecision(12)));
    }
  }
  return more;
}

/** The largest 1, 2 or 5 x 10^k at or below `v` (up: the smallest at or above). */
function niceLog(v: number, up: boolean): number {
  const e = Math.floor(Math.log10(v));
  const candidates = [1, 2, 5, 10].map((m) => Number((m * 10 ** e).toPrecision(12)));
  return up ? candidates.find((c) => c >= v * (1 - 1e-12))! : candidates.findLast((c) => c <= v)!;
}

function makeScale(axis: Axis, values: readonly number[], from: number, to: number): Scale {
  const finite = values.filter((v) => Number.isFinite(v) && (axis.scale !== "log" || v > 0));
  let lo: number, hi: number, ticks: number[];
  if (axis.scale === "log") {
    lo = axis.min ?? niceLog(finite.length ? Math.min(...finite) : 1, false);
    hi = axis.max ?? niceLog(finite.length ? Math.max(...finite) : 10, true);
    if (!(hi > lo)) hi = lo * 10;
    ticks = logTicks(lo, hi);
    const [a, b] = [Math.log10(lo), Math.log10(hi)];
    return {
      map: (v) => from + ((Math.log10(v) - a) / (b - a)) * (to - from),
      ticks,
      domain: [lo, hi],
    };
  }
  const dataLo = finite.length ? Math.min(...finite) : 0;
  const dataHi = finite.length ? Math.max(...finite) : 1;
  lo = axis.min ?? Math.min(0, dataLo);
  hi = axis.max ?? dataHi;
  if (!(hi > lo)) hi = lo + 1;
  const step = axis.tickStep ?? niceStep(hi - lo, 6);
  if (axis.min === undefined) lo = Math.floor(lo / step) * step; // end on ticks
  if (axis.max === undefined) hi = Math.ceil(hi / step - 1e-9) * step;
  ticks = ticksAt(lo, hi, step);
  return { map: (v) => from + ((v - lo) / (hi - lo)) * (to - from), ticks, domain: [lo, hi] };
}

const px = (v: number) => String(Math.round(v * 10) / 10);
const FONT = `font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" font-size="12"`;
const TEXT_WIDTH_PX = 6.8; // rough width of a 12 px character, for layout only

/** What every chart needs. */
export interface ChartBase {
  /** Unique in the page: prefixes the ids of the chart's elements. */
  id: string;
  /** Shown at the top and as the `<title>`. */
  title: string;
  /** What the chart shows, for screen readers (`<desc>`). */
  description: string;
  /** Size in px (default 880 x 360). */
  width?: number;
  /** Height in px. */
  height?: number;
}

function open(c: ChartBase, width: number, height: number): string {
  const id = escapeXml(c.id);
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-labelledby="${id}-title ${id}-desc" ${FONT}>` +
    `<title id="${id}-title">${escapeXml(c.title)}</title><desc id="${id}-desc">${
      escapeXml(c.description)
    }</desc>` +
    `<rect width="${width}" height="${height}" fill="#ffffff"/>` +
    `<text x="8" y="18" font-size="14" font-weight="bold" fill="#111">${escapeXml(c.title)}</text>`;
}

/** A legend entry: a swatch (line sample or filled box) and a name. */
interface LegendItem {
  name: string;
  style: SeriesStyle;
  box?: string; // fill of a box swatch (else a line sample)
}

/** A legend laid out in rows from (x, y); returns the SVG and the height used. */
function legend(items: readonly LegendItem[], x: number, y: number, width: number) {
  let cx = x, cy = y + 12, out = "";
  for (const item of items) {
    const w = 34 + item.name.length * TEXT_WIDTH_PX + 14;
    if (cx > x && cx + w > x + width) {
      cx = x;
      cy += 18;
    }
    const s = item.style;
    out += item.box !== undefined
      ? `<rect x="${px(cx)}" y="${
        cy - 9
      }" width="26" height="11" fill="${s.color}" stroke="#333" stroke-width="0.5"/>` +
        (item.box
          ? `<rect x="${px(cx)}" y="${cy - 9}" width="26" height="11" fill="${item.box}"/>`
          : "")
      : `<line x1="${px(cx)}" y1="${cy - 4}" x2="${px(cx + 28)}" y2="${
        cy - 4
      }" stroke="${s.color}" stroke-width="${s.width + 0.5}"${
        s.dash ? ` stroke-dasharray="${s.dash}"` : ""
      }/>`;
    out += `<text x="${px(cx + 34)}" y="${cy}" fill="#111">${escapeXml(item.name)}</text>`;
    cx += w;
  }
  return { svg: `<g class="legend">${out}</g>`, height: cy - y + 8 };
}

function axisTitle(axis: Axis): string {
  return `${axis.label} (${axis.unit})`;
}

/** Ticks, grid lines and axis titles of a plot area. */
function axes(
  x: Scale | null,
  y: Scale,
  xAxis: Axis | null,
  yAxis: Axis,
  box: { left: number; top: number; right: number; bottom: number },
): string {
  let out = "";
  for (const t of y.ticks) {
    const ty = px(y.map(t));
    out += `<line x1="${box.left}" y1="${ty}" x2="${box.right}" y2="${ty}" stroke="#ddd"/>` +
      `<text x="${box.left - 6}" y="${ty}" dy="4" text-anchor="end" fill="#333">${
        escapeXml(formatTick(t))
      }</text>`;
  }
  if (x) {
    for (const t of x.ticks) {
      const tx = px(x.map(t));
      out += `<line x1="${tx}" y1="${box.top}" x2="${tx}" y2="${box.bottom}" stroke="#eee"/>` +
        `<text x="${tx}" y="${box.bottom + 16}" text-anchor="middle" fill="#333">${
          escapeXml(formatTick(t))
        }</text>`;
    }
  }
  out += `<rect x="${box.left}" y="${box.top}" width="${box.right - box.left}" height="${
    box.bottom - box.top
  }" fill="none" stroke="#666"/>`;
  if (xAxis) {
    out += `<text class="axis-label" x="${px((box.left + box.right) / 2)}" y="${
      box.bottom + 36
    }" text-anchor="middle" fill="#111">${escapeXml(axisTitle(xAxis))}</text>`;
  }
  const my = px((box.top + box.bottom) / 2);
  out +=
    `<text class="axis-label" transform="translate(16 ${my}) rotate(-90)" text-anchor="middle" fill="#111">${
      escapeXml(axisTitle(yAxis))
    }</text>`;
  return out;
}

/** A series of a line chart: points in data units; a null y breaks the line. */
export interface Series {
  /** Legend name. */
  name: string;
  /** [x, y] points, x ascending. */
  points: readonly (readonly [number, number | null])[];
  /** Style (default: {@link seriesStyle} of the series' index). */
  style?: SeriesStyle;
}

/** A point to mark, such as a worst case. */
export interface Marker {
  /** Position in data units. */
  x: number;
  /** Position in data units. */
  y: number;
  /** Said on hover and to screen readers. */
  label: string;
  /** Ring colour (default dark grey). */
  color?: string;
}

/** A vertical reference line, such as the page size. */
export interface Guide {
  /** Position on the x axis, in data units. */
  x: number;
  /** Short label at its top (the labels of successive guides are stacked). */
  label: string;
  /** Line and label colour (default grey). */
  color?: string;
}

/** A line chart. */
export interface LineChartSpec extends ChartBase {
  /** The x axis. */
  x: Axis;
  /** The y axis. */
  y: Axis;
  /** One line each. */
  series: readonly Series[];
  /** Draw steps (hold each y until the next x) instead of straight segments. */
  step?: boolean;
  /** Points to mark. */
  markers?: readonly Marker[];
  /** Vertical reference lines. */
  guides?: readonly Guide[];
}

/** Render a line chart (one `<path>` per series, in legend order). */
export function lineChart(spec: LineChartSpec): string {
  const width = spec.width ?? 880, height = spec.height ?? 360;
  const styles = spec.series.map((s, i) => s.style ?? seriesStyle(i));
  const leg = legend(
    spec.series.map((s, i) => ({ name: s.name, style: styles[i]! })),
    8,
    26,
    width - 16,
  );
  const box = { left: 72, top: 34 + leg.height, right: width - 20, bottom: height - 46 };
  const xs = spec.series.flatMap((s) => s.points.map((p) => p[0]));
  const x = makeScale(spec.x, xs, box.left, box.right);
  // y fits what is in view: points within the x domain and the one before it (a step holds it)
  const ys = spec.series.flatMap((s) =>
    s.points.flatMap((p, i) => {
      const next = s.points[i + 1];
      const inView = p[0] >= x.domain[0] && p[0] <= x.domain[1] ||
        (p[0] < x.domain[0] && next !== undefined && next[0] > x.domain[0]);
      return p[1] === null || !inView ? [] : [p[1]];
    })
  );
  const y = makeScale(spec.y, ys, box.bottom, box.top);
  const clip = `${escapeXml(spec.id)}-clip`;
  let out = open(spec, width, height) + leg.svg + axes(x, y, spec.x, spec.y, box);
  out += `<clipPath id="${clip}"><rect x="${box.left}" y="${box.top}" width="${
    box.right - box.left
  }" height="${box.bottom - box.top}"/></clipPath>`;
  out += `<g clip-path="url(#${clip})">`;
  (spec.guides ?? []).forEach((g, i) => {
    const gx = px(x.map(g.x)), color = g.color ?? "#777";
    out +=
      `<line x1="${gx}" y1="${box.top}" x2="${gx}" y2="${box.bottom}" stroke="${color}" stroke-dasharray="1 3"/>` +
      `<text x="${gx}" y="${box.top + 12 + 13 * i}" dx="3" fill="${color}" font-size="11">${
        escapeXml(g.label)
      }</text>`;
  });
  spec.series.forEach((s, i) => {
    const st = styles[i]!;
    const d = seriesPath(s.points, x, y, spec.step ?? false, spec.x.scale === "log");
    out +=
      `<path class="series" d="${d}" fill="none" stroke="${st.color}" stroke-width="${st.width}"${
        st.dash ? ` stroke-dasharray="${st.dash}"` : ""
      } stroke-linejoin="round"><title>${escapeXml(s.name)}</title></path>`;
  });
  out += "</g>";
  for (const m of spec.markers ?? []) {
    out += `<circle class="marker" cx="${px(x.map(m.x))}" cy="${
      px(y.map(m.y))
    }" r="5" fill="#fff" stroke="${m.color ?? "#333"}" stroke-width="2.5"><title>${
      escapeXml(m.label)
    }</title></circle>`;
  }
  return out + "</svg>";
}

function seriesPath(
  points: Series["points"],
  x: Scale,
  y: Scale,
  step: boolean,
  logX: boolean,
): string {
  let d = "", pen = false;
  for (const [px0, py0] of points) {
    if (py0 === null || (logX && px0 <= 0)) {
      pen = false;
      continue;
    }
    const sx = px(x.map(px0)), sy = px(y.map(py0));
    d += !pen ? `M${sx} ${sy}` : step ? `H${sx}V${sy}` : `L${sx} ${sy}`;
    pen = true;
  }
  return d || "M0 0";
}

/** A cumulative distribution per series, on a log x axis. */
export interface CdfChartSpec extends ChartBase {
  /** The x axis (its scale is log). */
  x: Axis;
  /** Per series, [value, fraction of samples <= value] points, value ascending. */
  series: readonly (Series & { worst: number })[];
}

/** Render CDFs as step lines on a log x axis, each series' worst case marked. */
export function cdfChart(spec: CdfChartSpec): string {
  return lineChart({
    ...spec,
    x: { ...spec.x, scale: "log" },
    y: { label: "share of calls at or below", unit: "fraction", min: 0, max: 1 },
    step: true,
    markers: spec.series.map((s, i) => ({
      x: s.worst,
      y: 1,
      label: `${s.name}: worst case ${s.worst} ${spec.x.unit}`,
      color: (s.style ?? seriesStyle(i)).color,
    })),
  });
}

/** Fill patterns of bar series after the first, so bars read without colour. */
const BAR_PATTERNS: readonly string[] = [
  "",
  `<path d="M0 6L6 0" stroke="#fff" stroke-width="1.5"/>`,
  `<circle cx="3" cy="3" r="1.2" fill="#fff"/>`,
  `<path d="M0 3H6" stroke="#fff" stroke-width="1.5"/>`,
  `<path d="M0 0L6 6M0 6L6 0" stroke="#fff" stroke-width="1"/>`,
  `<path d="M3 0V6" stroke="#fff" stroke-width="1.5"/>`,
];

/** A grouped bar chart: one group per category, one bar per series in each. */
export interface BarChartSpec extends ChartBase {
  /** Group names along x. */
  categories: readonly string[];
  /** What the groups are (the x axis title, no unit). */
  categoryLabel: string;
  /** One bar per category each; null: no figure. */
  series: readonly { name: string; values: readonly (number | null)[]; style?: SeriesStyle }[];
  /** The y axis (a log axis starts its bars at its lower end; a bar too low to draw shows its value as text). */
  y: Axis;
}

/** Render a grouped bar chart. */
export function barChart(spec: BarChartSpec): string {
  const width = spec.width ?? 880, height = spec.height ?? 320;
  const id = escapeXml(spec.id);
  const styles = spec.series.map((s, i) => s.style ?? seriesStyle(i));
  const fill = (i: number) =>
    BAR_PATTERNS[i % BAR_PATTERNS.length] ? `url(#${id}-p${i % BAR_PATTERNS.length})` : "";
  const leg = legend(
    spec.series.map((s, i) => ({ name: s.name, style: styles[i]!, box: fill(i) })),
    8,
    26,
    width - 16,
  );
  const box = { left: 72, top: 34 + leg.height, right: width - 20, bottom: height - 46 };
  const values = spec.series.flatMap((s) => s.values.filter((v): v is number => v !== null));
  const positive = values.filter((v) => v > 0);
  let yAxis = spec.y;
  if (yAxis.scale === "log" && yAxis.min === undefined && positive.length > 0) {
    const least = Math.min(...positive); // bars start a power of ten below the least, so it shows
    const floor = 10 ** Math.floor(Math.log10(least));
    yAxis = { ...yAxis, min: floor < least ? floor : floor / 10 };
  }
  const y = makeScale(yAxis, values, box.bottom, box.top);
  let out = open(spec, width, height) + "<defs>" +
    BAR_PATTERNS.map((p, i) =>
      p
        ? `<pattern id="${id}-p${i}" width="6" height="6" patternUnits="userSpaceOnUse">${p}</pattern>`
        : ""
    ).join("") + "</defs>" + leg.svg + axes(null, y, null, spec.y, box);
  const groupW = (box.right - box.left) / Math.max(spec.categories.length, 1);
  const barW = (groupW * 0.8) / Math.max(spec.series.length, 1);
  const base = y.map(y.domain[0]);
  spec.categories.forEach((cat, c) => {
    const gx = box.left + c * groupW;
    out += `<text x="${px(gx + groupW / 2)}" y="${
      box.bottom + 16
    }" text-anchor="middle" fill="#333">${escapeXml(cat)}</text>`;
    spec.series.forEach((s, i) => {
      const v = s.values[c] ?? null;
      if (v === null) return;
      const bx = px(gx + groupW * 0.1 + i * barW);
      const top = v > y.domain[0] ? y.map(Math.min(v, y.domain[1])) : base;
      const tip = `<title>${escapeXml(`${s.name}, ${cat}: ${v} ${spec.y.unit}`)}</title>`;
      if (top >= base) {
        out += `<text class="bar-floor" x="${px(gx + groupW * 0.1 + (i + 0.5) * barW)}" y="${
          px(base - 3)
        }" text-anchor="middle" font-size="10" fill="#333">${
          escapeXml(formatTick(v))
        }${tip}</text>`;
        return;
      }
      const rect = `x="${bx}" y="${px(top)}" width="${px(barW - 1)}" height="${px(base - top)}"`;
      out +=
        `<g class="bar"><rect ${rect} fill="${
          styles[i]!.color
        }" stroke="#333" stroke-width="0.5">${tip}</rect>` +
        (fill(i) ? `<rect ${rect} fill="${fill(i)}"/>` : "") + "</g>";
    });
  });
  out += `<text class="axis-label" x="${px((box.left + box.right) / 2)}" y="${
    box.bottom + 36
  }" text-anchor="middle" fill="#111">${escapeXml(spec.categoryLabel)}</text>`;
  return out + "</svg>";
}

/** One colour class of a page map. */
export interface PageMapClass {
  /** Legend text. */
  label: string;
  /** Fill colour. */
  color: string;
  /** Drawn with white diagonal hatching over the colour. */
  hatched?: boolean;
}

/** A page map: a grid of cells, each coloured by a class. */
export interface PageMapChartSpec extends ChartBase {
  /** Per cell, the index of its class in `classes`, row by row. */
  cells: ArrayLike<number>;
  /** Cells per row. */
  columns: number;
  /** The classes, in legend order. */
  classes: readonly PageMapClass[];
}

/** Render a page map: runs of equal cells in a row are drawn as one rectangle. */
export function pageMapChart(spec: PageMapChartSpec): string {
  const width = spec.width ?? 880;
  const id = escapeXml(spec.id);
  const hatch = `url(#${id}-hatch)`;
  const leg = legend(
    spec.classes.map((c) => ({
      name: c.label,
      style: { color: c.color, dash: "", width: 2 },
      box: c.hatched ? hatch : "",
    })),
    8,
    26,
    width - 16,
  );
  const cell = Math.max(2, Math.floor((width - 16) / spec.columns));
  const rows = Math.ceil(spec.cells.length / spec.columns);
  const top = 34 + leg.height;
  const height = spec.height ?? top + rows * cell + 10;
  let out = open(spec, width, height) +
    `<defs><pattern id="${id}-hatch" width="6" height="6" patternUnits="userSpaceOnUse"><path d="M0 6L6 0M-1 1L1 -1M5 7L7 5" stroke="#fff" stroke-width="1.6"/></pattern></defs>` +
    leg.svg + `<g class="cells" shape-rendering="crispEdges">`;
  for (let r = 0; r < rows; r++) {
    const end = Math.min((r + 1) * spec.columns, spec.cells.length);
    for (let start = r * spec.columns; start < end;) {
      const k = spec.cells[start]!;
      let stop = start + 1;
      while (stop < end && spec.cells[stop] === k) stop++;
      const cls = spec.classes[k];
      if (cls === undefined) throw new RangeError(`Invalid page map cell ${start}: no class ${k}`);
      const rect = `x="${8 + (start - r * spec.columns) * cell}" y="${top + r * cell}" width="${
        (stop - start) * cell
      }" height="${cell}"`;
      out += `<rect ${rect} fill="${cls.color}"/>` +
        (cls.hatched ? `<rect ${rect} fill="${hatch}"/>` : "");
      start = stop;
    }
  }
  return out + "</g></svg>";
}
