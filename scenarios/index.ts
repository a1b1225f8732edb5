// Named scenarios (filled in below).
export function scenarioNames(): string[] {
  return [];
}
export async function runScenarioByName(name: string, print: (line: string) => void): Promise<number> {
  print(`unknown scenario ${name}`);
  return 2;
}
