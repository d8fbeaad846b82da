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

/**
 * When targets expire (SPEC §10): target → deadline in milliseconds since the
 * epoch. A target of the group that is not listed is permanent; a listed
 * target that is not in the group means nothing.
 */
export type Deadlines = Readonly<Record<string, number>>;

/** What the registry keeps for one application/environment: the group Prometheus reads, and its deadlines. */
export interface Registration {
  readonly group: TargetGroup;
  readonly expires: Deadlines;
}

export const NO_DEADLINES: Deadlines = Object.freeze({});

/** What a request body carries once parsed: either part may be absent. */
export interface Change {
  readonly targets?: readonly string[];
  readonly labels?: Labels;
}

export function appEnvKey({ application, environment }: AppEnv): string {
  return `${application}@${environment}`;
}
