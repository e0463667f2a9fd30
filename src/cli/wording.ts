// The library's messages name its options (maxPixels, options.threads); a command-line user knows the
// flags. One table turns the first into the second wherever the CLI prints a library message.

const TERMS: ReadonlyArray<[RegExp, string]> = [
  [/raise it with the maxPixels option/g, "raise it with --max-pixels"],
  [/\boptions\.maxPixels\b/g, "--max-pixels"],
  [/\boptions\.threads\b/g, "--threads"],
  [/\boptions\.backend\b/g, "--backend"],
  [/\boptions\.variant\b/g, "--variant"],
  [/\benableTiling: tileSampleMinSize\b/g, "--tile-size"],
  [/\bcomponents: "(\w+)" or "(\w+)"/g, "--components $1 or $2"],
  [/\b(?:options\.)?components: "(\w+)"/g, "--components $1"],
  [/\boptions\.components\b/g, "--components"],
];

export function inCliTerms(message: string): string {
  let out = message;
  for (const [from, to] of TERMS) out = out.replace(from, to);
  return out;
}
