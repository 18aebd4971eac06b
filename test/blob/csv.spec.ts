import assert from "node:assert/strict";
import { parse } from "csv-parse/sync";
import { csvText, neutraliseFormula, parseColumns } from "../../src/blob/csv";
import { formatDuration } from "../../src/core/time";
import { CALL_LOG_COLUMNS } from "../../src/goto/types";

describe("CSV of call-log rows", () => {
  const format = { columns: parseColumns("", CALL_LOG_COLUMNS) };

  it("writes the original's header and CRLF lines, and quotes names with commas and quotes", () => {
    const text = csvText([{ user: "Dupont, Émile", callerName: 'Café "Le Progrès"', duration: "0:01:23" }], format, true);
    assert.ok(text.startsWith("user,queue,direction,disposition,startTime,endTime,answerTime,duration,callerName,callerNumber,calleeName,calleeNumber\r\n"));
    assert.ok(text.endsWith("\r\n"));
    const [row] = parse(text, { columns: true }) as Array<Record<string, string>>;
    assert.equal(row!.user, "Dupont, Émile");
    assert.equal(row!.callerName, 'Café "Le Progrès"');
    assert.equal(row!.queue, "");
  });

  it("neutralises cells a spreadsheet would run as a formula, but not plain numbers", () => {
    assert.equal(neutraliseFormula('=HYPERLINK("http://x","y")'), `'=HYPERLINK("http://x","y")`);
    assert.equal(neutraliseFormula("@SUM(A1)"), "'@SUM(A1)");
    assert.equal(neutraliseFormula("-Unknown-"), "'-Unknown-");
    assert.equal(neutraliseFormula("+32 2 555 01 99"), "'+32 2 555 01 99");
    assert.equal(neutraliseFormula("+3225550199"), "+3225550199");
    assert.equal(neutraliseFormula("-12.5"), "-12.5");
    assert.equal(neutraliseFormula("Support Desk"), "Support Desk");
    const [row] = parse(csvText([{ user: "=1+1", callerNumber: "+3225550199" }], format, true), { columns: true }) as Array<Record<string, string>>;
    assert.equal(row!.user, "'=1+1");
    assert.equal(row!.callerNumber, "+3225550199");
  });

  it("leaves formulas alone when asked to", () => {
    assert.match(csvText([{ user: "=1+1" }], { ...format, neutraliseFormulas: false }, false), /^=1\+1,/);
  });

  it("takes configured columns with headers, and writes nothing for no rows without a header", () => {
    const columns = parseColumns("main, sub, user:Engineer", []);
    assert.equal(csvText([{ main: "A", sub: "B", user: "Zoë", extra: 1 }], { columns }, true), "main,sub,Engineer\r\nA,B,Zoë\r\n");
    assert.equal(csvText([], { columns }, false), "");
    assert.equal(csvText([], { columns }, true), "main,sub,Engineer\r\n");
  });

  it("formats durations as H:MM:SS from milliseconds", () => {
    assert.equal(formatDuration(83_400), "0:01:23");
    assert.equal(formatDuration(3_723_000), "1:02:03");
    assert.equal(formatDuration(90_000_000), "25:00:00");
    assert.equal(formatDuration(null), "");
  });
});
