/** One application/environment: the unit the API addresses and the store keeps one file for. */
export interface AppEnv {
  readonly application: string;
  readonly environment: string;
}

export type Labels = Readonly<Record<string, string>>;

/** A file_sd target group, exactly as Prometheus reads it. */
export interface TargetGroup {
  readonly targets: readonly string[];
  readonly labels: Labels;
}

/** What a request body carries once parsed: either part may be absent. */
export interface Change {
  readonly targets?: readonly string[];
  readonly labels?: Labels;
}

export function appEnvKey({ application, environment }: AppEnv): string {
  return `${application}@${environment}`;
}
