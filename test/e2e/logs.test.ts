// Logs and shell completion. --log-format json: stderr holds only JSON lines (one object each, with time, level, run_id and
// event), failures included, and the report stays the last line of stdout (and of stdout and
// stderr merged, as Airflow's BashOperator reads them).
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BIN, copyLake, REPO, runCli } from '../support/cli.js';
import { freshDatabase } from '../support/pg.js';
import { NO_WAREHOUSE_ENV } from '../support/harness.js';

const LEVELS = ['debug', 'info', 'warn', 'error'];

/** Every line of stderr as a JSON record with the envelope's fields; fails on any other line. */
function records(stderr: string): any[] {
  const lines = stderr.split('\n');
  expect(lines.pop(), 'stderr ends with a newline').to.equal('');
  return lines.map((line) => {
    let r: any;
    try {
      r = JSON.parse(line);
    } catch {
      throw new Error(`a stderr line is not JSON: ${line}\n--- stderr:\n${stderr}`);
    }
    expect(r, line).to.be.an('object');
    expect(new Date(r.time).toISOString(), line).to.equal(r.time);
    expect(r.level, line).to.be.oneOf(LEVELS);
    expect(r.event, line).to.be.a('string').and.not.equal('');
    expect(r, line).to.have.property('run_id');
    expect(r.message, line).to.be.a('string');
    return r;
  });
}

function lastLine(text: string): any {
  const lines = text.trimEnd().split('\n');
  return JSON.parse(lines[lines.length - 1]);
}

describe('e2e: logs', function () {
  this.timeout(180_000);

  it('a successful run: only JSON lines on stderr, all with the run id of the report; the report last on stdout', async () => {
    const url = await freshDatabase();
    const lake = copyLake('tiny');
    const r = await runCli(['run', '--lake', lake, '--warehouse', url, '--log-format', 'json', '--json'], { env: NO_WAREHOUSE_ENV });
    expect(r.code, r.stderr).to.equal(0);
    const report = lastLine(r.stdout);
    expect(report).to.include({ command: 'run', ok: true });
    const recs = records(r.stderr);
    expect(recs.length).to.be.greaterThan(0);
    for (const rec of recs) expect(rec).to.include({ run_id: report.runId, command: 'run' });
    const stages = recs.filter((x) => x.event === 'stage').map((x) => x.stage);
    expect(stages).to.include.members(['list', 'dimensions', 'streams', 'compute', 'load', 'archive']);
    expect(recs.filter((x) => x.level === 'debug')).to.deep.equal([]);
  });

  it('a failed run (65): the failure is a JSON error line too, and the report is still last on stdout', async () => {
    const url = await freshDatabase();
    const lake = copyLake('messy');
    const r = await runCli(['run', '--lake', lake, '--warehouse', url, '--log-format', 'json', '--json'], { env: NO_WAREHOUSE_ENV });
    expect(r.code, r.stderr).to.equal(65);
    const report = lastLine(r.stdout);
    expect(report.ok).to.equal(false);
    expect(report.error.code).to.equal('MKPI_BAD_ROWS');
    const recs = records(r.stderr);
    const errors = recs.filter((x) => x.level === 'error');
    expect(errors).to.have.length(1);
    expect(errors[0]).to.include({ event: 'error', code: 'MKPI_BAD_ROWS', run_id: report.runId, command: 'run' });
    expect(errors[0].hint).to.be.a('string');
    expect(recs.some((x) => x.level === 'warn')).to.equal(true);
  });

  it('merged as BashOperator reads it (2>&1): every line is JSON and the last one is the report', async () => {
    const lake = copyLake('messy');
    const env: Record<string, string | undefined> = { ...process.env, CI: 'true', MUSICKPI_LOG_FORMAT: 'json', ...NO_WAREHOUSE_ENV };
    for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
    const args = ['validate', '--lake', lake, '--json', '--verbose'];
    const out = await promisify(execFile)('bash', ['-c', '"$@" 2>&1', 'bash', process.execPath, BIN, ...args], {
      cwd: REPO,
      env,
    }).then(
      (r) => ({ code: 0, stdout: r.stdout }),
      (err: { code: number; stdout: string }) => ({ code: err.code, stdout: err.stdout }),
    );
    expect(out.code, out.stdout).to.equal(65);
    const lines = out.stdout.trimEnd().split('\n');
    const report = JSON.parse(lines.pop()!);
    expect(report).to.include({ command: 'validate', ok: false });
    const recs = records(lines.join('\n') + '\n');
    // --verbose: a progress line per file, at level debug.
    expect(recs.filter((x) => x.event === 'progress' && x.level === 'debug').length).to.be.at.least(2);
    expect(recs.at(-1)).to.include({ event: 'error', code: 'MKPI_BAD_ROWS', run_id: report.runId });
  });

  it('a usage error is a JSON line as well (64), from the configuration and from the parser', async () => {
    const lake = copyLake('tiny');
    const config = await runCli(['validate', '--lake', lake, '--log-format', 'json', '--max-bad-rows', 'abc']);
    expect(config.code, config.stderr).to.equal(64);
    expect(records(config.stderr)).to.satisfy((rs: any[]) => rs.length === 1 && rs[0].code === 'MKPI_USAGE' && rs[0].event === 'error');
    const parser = await runCli(['validate', '--lake', lake, '--log-format', 'json', '--bogus']);
    expect(parser.code, parser.stderr).to.equal(64);
    const [only, ...rest] = records(parser.stderr);
    expect(rest).to.deep.equal([]);
    expect(only).to.include({ code: 'MKPI_USAGE', level: 'error' });
    expect(only.message).to.contain('--bogus');
  });

  it('text stays as it was off a terminal: timestamped lines, no colour, no spinner, the failure line and hint', async () => {
    const lake = copyLake('messy');
    const r = await runCli(['validate', '--lake', lake, '--color']);
    expect(r.code).to.equal(65);
    expect(r.stderr).not.to.contain('\u001b[');
    const lines = r.stderr.trimEnd().split('\n');
    const failure = lines.findIndex((l) => l.startsWith('musickpi validate: MKPI_BAD_ROWS: '));
    expect(failure, r.stderr).to.be.greaterThan(0);
    expect(lines[failure + 1]).to.match(/^ {2}hint: /);
    for (const l of lines.slice(0, failure)) expect(l).to.match(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z /);
  });
});

describe('e2e: shell completion', function () {
  this.timeout(60_000);
  const COMMANDS = ['run', 'validate', 'compute', 'archive', 'status', 'retract', 'init', 'query', 'completion'];

  it('musickpi completion prints a bash script (zsh under zsh) that asks musickpi for its words', async () => {
    const bash = await runCli(['completion'], { env: { SHELL: '/bin/bash' } });
    expect(bash.code, bash.stderr).to.equal(0);
    expect(bash.stdout).to.contain('musickpi --get-yargs-completions');
    expect(bash.stdout).to.contain('complete -o bashdefault -o default -F _musickpi_yargs_completions musickpi');
    const zsh = await runCli(['completion'], { env: { SHELL: '/usr/bin/zsh' } });
    expect(zsh.code, zsh.stderr).to.equal(0);
    expect(zsh.stdout).to.match(/^#compdef musickpi/);
  });

  it('the words: every command, a command’s options, the values of --log-format', async () => {
    const words = async (...typed: string[]) => {
      const r = await runCli(['--get-yargs-completions', 'musickpi', ...typed]);
      expect(r.code, r.stderr).to.equal(0);
      return r.stdout.trim().split('\n');
    };
    expect(await words('')).to.include.members(COMMANDS);
    expect(await words('run', '--')).to.include.members(['--lake', '--log-format', '--verbose', '--debug', '--expect-dates']);
    expect(await words('run', '--log-format', '')).to.deep.equal(['text', 'json']);
  });

  it('sourced in bash, the script completes a command name', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'musickpi-completion-'));
    try {
      symlinkSync(BIN, join(dir, 'musickpi'));
      const script = (await runCli(['completion'], { env: { SHELL: '/bin/bash' } })).stdout;
      writeFileSync(join(dir, 'completion.bash'), script);
      const probe = `source ${dir}/completion.bash; COMP_WORDS=(musickpi r); COMP_CWORD=1; _musickpi_yargs_completions; printf '%s\\n' "\${COMPREPLY[@]}"`;
      const { stdout } = await promisify(execFile)('bash', ['-c', probe], {
        env: { ...process.env, PATH: `${dir}:${process.env.PATH ?? ''}`, CI: 'true' },
      });
      expect(stdout.trim().split('\n').sort()).to.deep.equal(['report', 'retract', 'run', 'runs']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
