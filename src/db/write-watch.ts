import type { SqliteStatement } from 'kysely';

/**
 * Tells an in-memory cache that what it holds may have changed. On SQLite, every write goes
 * through this process's one connection, so the statements themselves say what changed: a watch
 * counts the write statements its predicate selects (by SQL text), and counts again when the
 * transaction that ran them ends, so a value read between the write and its commit is not kept.
 * A cache compares `epoch` with the one it loaded under and drops what it holds when they differ.
 */
export interface WriteWatch {
  readonly epoch: number;
}

export interface WriteWatches {
  /** A new watch over the write statements whose SQL text `affects` selects. */
  watch(this: void, affects: (sql: string) => boolean): WriteWatch;
  /** The statement to hand to Kysely for `text`: wrapped when some watch selects it. */
  wrap(this: void, text: string, statement: SqliteStatement): SqliteStatement;
}

const TRANSACTION_END = /^\s*(?:commit|rollback|end|release)\b/i;

interface Watch {
  affects: (sql: string) => boolean;
  epoch: number;
  pending: boolean;
}

export function createWriteWatches(): WriteWatches {
  const watches: Watch[] = [];
  // What each statement text means for the watches, decided once per text.
  const decisions = new Map<string, Watch[] | 'end'>();

  function decide(text: string, reader: boolean): Watch[] | 'end' {
    if (TRANSACTION_END.test(text)) return 'end';
    if (reader && !/\breturning\b/i.test(text)) return [];
    return watches.filter((w) => w.affects(text));
  }
  function written(selected: Watch[]) {
    for (const w of selected) {
      w.epoch++;
      w.pending = true;
    }
  }
  function ended() {
    for (const w of watches) {
      if (!w.pending) continue;
      w.epoch++;
      w.pending = false;
    }
  }

  return {
    watch(affects) {
      const entry = { affects, epoch: 0, pending: false };
      watches.push(entry);
      decisions.clear();
      return {
        get epoch() {
          return entry.epoch;
        },
      };
    },
    wrap(text, statement) {
      if (watches.length === 0) return statement;
      let decision = decisions.get(text);
      if (decision === undefined) {
        decision = decide(text, statement.reader);
        // Texts repeat (parameterised queries); a flood of distinct ones must not grow memory.
        if (decisions.size >= 1_000) decisions.clear();
        decisions.set(text, decision);
      }
      if (decision === 'end') return after(statement, ended);
      const selected = decision;
      return selected.length === 0 ? statement : after(statement, () => written(selected));
    },
  };
}

/** The statement, calling `then` after each run (even a failed one: it may have half-applied). */
function after(statement: SqliteStatement, then: () => void): SqliteStatement {
  return {
    reader: statement.reader,
    all(parameters) {
      try {
        return statement.all(parameters);
      } finally {
        then();
      }
    },
    run(parameters) {
      try {
        return statement.run(parameters);
      } finally {
        then();
      }
    },
    iterate(parameters) {
      then();
      return statement.iterate(parameters);
    },
  };
}
