import type { Progress } from "../index.js";

/**
 * A one-line progress bar on a TTY stream: stage, bar, steps and an estimate of the time left from the
 * pace so far. Silent when the stream is not a TTY (pipes, CI logs, tests), so output stays clean.
 */
export class ProgressBar {
  private started = 0;
  /** Steps already done when the stage was first seen: the pace is measured from there. */
  private startDone = 0;
  private stage = "";
  private lastDraw = 0;
  private drawn = false;

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly enabled: boolean = stream.isTTY === true,
  ) {}

  update = (p: Progress): void => {
    if (!this.enabled) return;
    const now = Date.now();
    if (p.stage !== this.stage) {
      this.stage = p.stage;
      this.started = now;
      this.startDone = p.done;
    }
    // Redraw at most ~12 times a second, but always show the final step.
    if (p.done < p.total && now - this.lastDraw < 80) return;
    this.lastDraw = now;
    const frac = p.total > 0 ? Math.min(1, p.done / p.total) : 0;
    const cols = Math.max(20, (this.stream.columns ?? 80) - 48);
    const width = Math.min(40, cols);
    const fill = Math.round(frac * width);
    const elapsed = (now - this.started) / 1000;
    const paced = p.done - this.startDone;
    const left = paced > 0 && p.done < p.total ? ` ${formatSeconds((elapsed / paced) * (p.total - p.done))} left` : "";
    const bar = "█".repeat(fill) + "░".repeat(width - fill);
    this.stream.write(
      `\r\x1b[K${p.stage.padEnd(8)} ${bar} ${String(Math.round(frac * 100)).padStart(3)}% ${p.done}/${p.total}${left}`,
    );
    this.drawn = true;
  };

  /** Erases the bar so the next line starts clean. */
  clear(): void {
    if (this.enabled && this.drawn) this.stream.write("\r\x1b[K");
    this.drawn = false;
  }
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 120) return `${Math.round(s)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}
