export async function demoCommand(_argv: readonly string[], print: (line: string) => void): Promise<number> {
  print("demo: not yet");
  return 2;
}
