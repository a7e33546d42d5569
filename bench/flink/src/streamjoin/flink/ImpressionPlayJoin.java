package streamjoin.flink;

import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.accumulators.LongCounter;
import org.apache.flink.api.common.accumulators.LongMaximum;
import org.apache.flink.api.common.eventtime.Watermark;
import org.apache.flink.api.common.eventtime.WatermarkGenerator;
import org.apache.flink.api.common.eventtime.WatermarkOutput;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.connector.file.src.FileSource;
import org.apache.flink.connector.file.src.reader.SimpleStreamFormat;
import org.apache.flink.connector.file.src.reader.StreamFormat;
import org.apache.flink.core.fs.FSDataInputStream;
import org.apache.flink.core.fs.Path;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.streaming.api.functions.co.KeyedCoProcessFunction;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

/**
 * The impression-play join of shared/JOIN_SEMANTICS.md as a Flink DataStream job: the design
 * Netflix ran (KeyedCoProcessFunction, summarised ValueState, MapState of seen event ids,
 * event-time timers at window_start + 4 h, RocksDB state backend), over the generator's files.
 *
 * <pre>
 * java -cp CLASSPATH streamjoin.flink.ImpressionPlayJoin --input DIR --output DIR
 *      [--parallelism N] [--sink files|discard] [--alignment-ms MS] [--watermark-step-ms MS]
 *      [--rocksdb-dir DIR] [--managed-memory SIZE] [--object-reuse true|false]
 * </pre>
 *
 * One FileSource (parallelism 1, one split) per input file, each with its own watermark
 * (bounded out-of-orderness D = 2 min), so a partition's watermark is its own file's; the
 * join's watermark is Flink's minimum over its input channels.
 */
public final class ImpressionPlayJoin {

    static final long W = 4L * 3600 * 1000; // joinWindow
    static final long D = 2L * 60 * 1000; // maxOutOfOrderness

    // Devices sorted by byte value, as the output wants them; a bit each in the summary.
    static final String[] DEVICES = {"android", "ios", "other", "tv", "web"};

    static final OutputTag<String> REJECTED = new OutputTag<String>("rejected") {};

    // ------------------------------------------------------------------ records

    /** A parsed input line. Valid when {@code malformed} is null. A Flink POJO. */
    public static class Event {
        public boolean play;
        public String eventId;
        public long time;
        public long profileId;
        public long titleId;
        public long row;
        public long rank;
        public int device; // index into DEVICES
        public long durationMs;
        public String malformed; // reason, or null
        public String raw; // the line, kept only when malformed

        public Event() {}

        /** Hash of the event's content, to tell a conflicting duplicate from a copy. */
        long contentHash() {
            long h = play ? 1 : 2;
            h = h * 1_000_003 + time;
            h = h * 1_000_003 + profileId;
            h = h * 1_000_003 + titleId;
            h = h * 1_000_003 + row;
            h = h * 1_000_003 + rank;
            h = h * 1_000_003 + device;
            h = h * 1_000_003 + durationMs;
            return h;
        }
    }

    // ------------------------------------------------------------------ parsing

    static final JsonFactory JSON = new JsonFactory();

    private static final int F_TYPE = 0, F_ID = 1, F_TIME = 2, F_PROFILE = 3, F_TITLE = 4,
            F_ROW = 5, F_RANK = 6, F_DEVICE = 7, F_DURATION = 8;
    // The oracle's order of checks: type, then the stream's fields in the contract's order.
    private static final int[] IMPRESSION_FIELDS = {F_ID, F_TIME, F_PROFILE, F_TITLE, F_ROW, F_RANK, F_DEVICE};
    private static final int[] PLAY_FIELDS = {F_ID, F_TIME, F_PROFILE, F_TITLE, F_DEVICE, F_DURATION};

    private static int fieldOf(String name) {
        switch (name) {
            case "type": return F_TYPE;
            case "event_id": return F_ID;
            case "event_time": return F_TIME;
            case "profile_id": return F_PROFILE;
            case "title_id": return F_TITLE;
            case "row": return F_ROW;
            case "rank": return F_RANK;
            case "device": return F_DEVICE;
            case "duration_ms": return F_DURATION;
            default: return -1;
        }
    }

    private static boolean isString(int f) {
        return f == F_TYPE || f == F_ID || f == F_DEVICE;
    }

    /**
     * Parses one line of the {@code play} or impression stream, following the contract's
     * validity rules (and the oracle's reasons: invalid_json, missing_field, wrong_type,
     * bad_value). Fields other than the stream's are ignored; a repeated field counts last.
     */
    static Event parse(String line, boolean play) {
        Event e = new Event();
        e.play = play;
        // 0 = absent, 1 = present and well typed, 2 = present with the wrong JSON type
        byte[] state = new byte[9];
        String type = null, device = null;
        int[] wanted = play ? PLAY_FIELDS : IMPRESSION_FIELDS;
        try (JsonParser p = JSON.createParser(line)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                return malformed(e, "invalid_json", line);
            }
            JsonToken t;
            while ((t = p.nextToken()) == JsonToken.FIELD_NAME) {
                int f = fieldOf(p.currentName());
                JsonToken v = p.nextToken();
                if (f < 0 || (f == F_ROW || f == F_RANK) && play || f == F_DURATION && !play) {
                    p.skipChildren();
                    continue;
                }
                if (isString(f)) {
                    if (v == JsonToken.VALUE_STRING) {
                        state[f] = 1;
                        String s = p.getText();
                        if (f == F_TYPE) type = s;
                        else if (f == F_ID) e.eventId = s;
                        else device = s;
                    } else {
                        state[f] = 2;
                        p.skipChildren();
                    }
                } else if (v == JsonToken.VALUE_NUMBER_INT
                        && p.getNumberType() != JsonParser.NumberType.BIG_INTEGER) {
                    state[f] = 1;
                    long n = p.getLongValue();
                    switch (f) {
                        case F_TIME: e.time = n; break;
                        case F_PROFILE: e.profileId = n; break;
                        case F_TITLE: e.titleId = n; break;
                        case F_ROW: e.row = n; break;
                        case F_RANK: e.rank = n; break;
                        default: e.durationMs = n;
                    }
                } else {
                    state[f] = 2; // float, exponent, boolean, string, null, object, array; or > 64 bits
                    p.skipChildren();
                }
            }
            if (t != JsonToken.END_OBJECT || p.nextToken() != null) {
                return malformed(e, "invalid_json", line);
            }
        } catch (IOException | RuntimeException ex) {
            return malformed(e, "invalid_json", line);
        }
        if (state[F_TYPE] == 0) return malformed(e, "missing_field", line);
        if (state[F_TYPE] == 2 || !type.equals(play ? "play" : "impression")) {
            return malformed(e, "wrong_type", line);
        }
        for (int f : wanted) {
            if (state[f] == 0) return malformed(e, "missing_field", line);
            if (state[f] == 2) return malformed(e, "wrong_type", line);
        }
        e.device = Arrays.binarySearch(DEVICES, device);
        if (e.device < 0) return malformed(e, "bad_value", line);
        return e;
    }

    private static Event malformed(Event e, String reason, String line) {
        e.malformed = reason;
        e.raw = line;
        return e;
    }

    /** Reads a JSON-lines file, one Event per line (malformed ones included, marked). */
    public static final class JsonLinesFormat extends SimpleStreamFormat<Event> {
        private final boolean play;

        JsonLinesFormat(boolean play) {
            this.play = play;
        }

        @Override
        public StreamFormat.Reader<Event> createReader(Configuration config, FSDataInputStream stream) {
            BufferedReader in = new BufferedReader(
                    new InputStreamReader(stream, StandardCharsets.UTF_8), 1 << 16);
            return new StreamFormat.Reader<Event>() {
                @Override
                public Event read() throws IOException {
                    String line = in.readLine();
                    return line == null ? null : parse(line, play);
                }

                @Override
                public void close() throws IOException {
                    in.close();
                }
            };
        }

        @Override
        public TypeInformation<Event> getProducedType() {
            return TypeInformation.of(Event.class);
        }
    }

    // ------------------------------------------------------------------ watermarks

    /**
     * Bounded out-of-orderness, as Flink's own (watermark = max valid event_time - D - 1 ms,
     * so "late" is event_time < max - D and a timer at T fires once max - D > T, as in the
     * contract), but ignoring malformed records, and with {@code stepMs} > 0 also emitted
     * from onEvent whenever it has advanced by stepMs (not only every
     * pipeline.auto-watermark-interval of processing time).
     */
    static final class BoundedDisorder implements WatermarkGenerator<Event> {
        private final long stepMs;
        private long max = Long.MIN_VALUE + D + 1;
        private long emitted = Long.MIN_VALUE;

        BoundedDisorder(long stepMs) {
            this.stepMs = stepMs;
        }

        @Override
        public void onEvent(Event e, long ts, WatermarkOutput out) {
            if (e.malformed != null) return;
            if (e.time > max) {
                max = e.time;
                long wm = max - D - 1;
                if (stepMs > 0 && wm >= emitted + stepMs) {
                    emitted = wm;
                    out.emitWatermark(new Watermark(wm));
                }
            }
        }

        @Override
        public void onPeriodicEmit(WatermarkOutput out) {
            long wm = max - D - 1;
            if (wm > emitted) {
                emitted = wm;
                out.emitWatermark(new Watermark(wm));
            }
        }
    }

    // ------------------------------------------------------------------ validation

    /** Counts every line; malformed ones go to the rejected output, valid ones on. */
    static final class Validate extends ProcessFunction<Event, Event> {
        private transient LongCounter records, malformed;
        private transient Map<String, LongCounter> byReason;

        @Override
        public void open(OpenContext ctx) {
            records = getRuntimeContext().getLongCounter("records");
            malformed = getRuntimeContext().getLongCounter("malformed");
            byReason = new TreeMap<>();
        }

        @Override
        public void processElement(Event e, Context ctx, Collector<Event> out) {
            records.add(1);
            if (e.malformed == null) {
                out.collect(e);
                return;
            }
            malformed.add(1);
            byReason.computeIfAbsent(e.malformed,
                    r -> getRuntimeContext().getLongCounter("malformed." + r)).add(1);
            ctx.output(REJECTED, "{\"reason\":\"" + e.malformed + "\",\"stream\":\""
                    + (e.play ? "plays" : "impressions") + "\",\"line\":" + quote(e.raw) + "}");
        }
    }

    static String quote(String s) {
        StringBuilder b = new StringBuilder(s.length() + 2).append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    // ------------------------------------------------------------------ the join

    // An entry's summary: NF longs in a long[] (a key's open entries side by side; almost
    // always one). NULL stands for JSON null.
    static final int WS = 0, MAXT = 1, IMPS = 2, PLAYS = 3, FIRST_IMP = 4, LAST_IMP = 5,
            BEST_ROW = 6, BEST_RANK = 7, DEVS = 8, FIRST_PLAY = 9, DURATION = 10, NF = 11;
    static final long NULL = Long.MIN_VALUE;

    /**
     * Input 1 impressions, input 2 plays, keyed by (profile_id, title_id).
     *
     * <p>State per key: {@code entries}, the summaries of the key's open entries (ValueState of
     * a long[]), and {@code seen}, the event ids folded into them (MapState event_id ->
     * {event_time, content hash}), for deduplication. Events are folded on arrival; each entry
     * has an event-time timer at window_start + W.
     *
     * <p>An event goes to the open entry whose [window_start, window_start + W) holds it;
     * else, if it is earlier than an open entry, to the nearest such entry, whose
     * window_start moves back to it, and its timer with it (a play before its impression);
     * else it opens an entry. So a key's later entry (an orphan play, a later session) that
     * arrives before the earlier entry's timer fired stays a separate entry, as the
     * contract's batch rule has it; and when the inputs are far out of step (no alignment),
     * entries are merged rather than split.
     */
    static final class Join extends KeyedCoProcessFunction<Tuple2<Long, Long>, Event, Event, String> {
        private transient ValueState<long[]> entries;
        private transient MapState<String, long[]> seen;
        private transient LongCounter late, duplicates, events, emitted, conflicting;
        // How far ahead of the join's watermark an event arrived, at most, per input: a
        // measure of how well the inputs are aligned.
        private transient LongMaximum leadImpressions, leadPlays;

        @Override
        public void open(OpenContext ctx) {
            entries = getRuntimeContext().getState(new ValueStateDescriptor<>(
                    "entries", PrimitiveArrayTypeInfo.LONG_PRIMITIVE_ARRAY_TYPE_INFO));
            seen = getRuntimeContext().getMapState(new MapStateDescriptor<>(
                    "seen", Types.STRING, PrimitiveArrayTypeInfo.LONG_PRIMITIVE_ARRAY_TYPE_INFO));
            late = getRuntimeContext().getLongCounter("late");
            duplicates = getRuntimeContext().getLongCounter("duplicates");
            events = getRuntimeContext().getLongCounter("events");
            emitted = getRuntimeContext().getLongCounter("entries");
            conflicting = getRuntimeContext().getLongCounter("malformed.conflicting_duplicate");
            leadImpressions = new LongMaximum(0);
            leadPlays = new LongMaximum(0);
            getRuntimeContext().addAccumulator("max_lead_ms.impressions", leadImpressions);
            getRuntimeContext().addAccumulator("max_lead_ms.plays", leadPlays);
        }

        @Override
        public void processElement1(Event e, Context ctx, Collector<String> out) throws Exception {
            process(e, ctx);
        }

        @Override
        public void processElement2(Event e, Context ctx, Collector<String> out) throws Exception {
            process(e, ctx);
        }

        private void process(Event e, Context ctx) throws Exception {
            long t = e.time;
            if (t <= ctx.timerService().currentWatermark()) { // t < (max - D) of the contract
                late.add(1);
                ctx.output(REJECTED, "{\"reason\":\"late\",\"event_id\":\"" + e.eventId
                        + "\",\"event_time\":" + t + ",\"profile_id\":" + e.profileId
                        + ",\"title_id\":" + e.titleId + "}");
                return;
            }
            long wm = ctx.timerService().currentWatermark();
            if (wm > Long.MIN_VALUE) (e.play ? leadPlays : leadImpressions).add(t - wm);
            long hash = e.contentHash();
            long[] prev = seen.get(e.eventId);
            if (prev != null) {
                if (prev[1] == hash) {
                    duplicates.add(1);
                } else {
                    conflicting.add(1);
                    ctx.output(REJECTED, "{\"reason\":\"conflicting_duplicate\",\"event_id\":\""
                            + e.eventId + "\"}");
                }
                return;
            }
            long[] st = entries.value();
            int n = st == null ? 0 : st.length / NF;
            int at = -1;
            for (int i = 0; i < n; i++) {
                long ws = st[i * NF + WS];
                if (ws <= t && t < ws + W) { at = i; break; }
            }
            if (at < 0) { // earlier than an open entry: it becomes the nearest one's start
                for (int i = 0; i < n; i++) {
                    long ws = st[i * NF + WS];
                    if (t < ws && (at < 0 || ws < st[at * NF + WS])) at = i;
                }
                if (at >= 0) {
                    long ws = st[at * NF + WS];
                    ctx.timerService().deleteEventTimeTimer(ws + W);
                    ctx.timerService().registerEventTimeTimer(t + W);
                    st[at * NF + WS] = t;
                }
            }
            if (at < 0) {
                st = st == null ? new long[NF] : Arrays.copyOf(st, st.length + NF);
                at = n;
                int o = at * NF;
                st[o + WS] = t;
                st[o + MAXT] = t;
                st[o + FIRST_IMP] = st[o + LAST_IMP] = st[o + BEST_ROW] = st[o + BEST_RANK] = NULL;
                st[o + FIRST_PLAY] = NULL;
                ctx.timerService().registerEventTimeTimer(t + W);
            }
            fold(st, at * NF, e);
            entries.update(st);
            seen.put(e.eventId, new long[] {t, hash});
            events.add(1);
        }

        private static void fold(long[] s, int o, Event e) {
            long t = e.time;
            if (t > s[o + MAXT]) s[o + MAXT] = t;
            s[o + DEVS] |= 1L << e.device;
            if (e.play) {
                s[o + PLAYS]++;
                if (s[o + FIRST_PLAY] == NULL || t < s[o + FIRST_PLAY]) s[o + FIRST_PLAY] = t;
                s[o + DURATION] += e.durationMs;
            } else {
                s[o + IMPS]++;
                if (s[o + FIRST_IMP] == NULL || t < s[o + FIRST_IMP]) s[o + FIRST_IMP] = t;
                if (s[o + LAST_IMP] == NULL || t > s[o + LAST_IMP]) s[o + LAST_IMP] = t;
                if (s[o + BEST_ROW] == NULL || e.row < s[o + BEST_ROW]
                        || e.row == s[o + BEST_ROW] && e.rank < s[o + BEST_RANK]) {
                    s[o + BEST_ROW] = e.row;
                    s[o + BEST_RANK] = e.rank;
                }
            }
        }

        @Override
        public void onTimer(long ts, OnTimerContext ctx, Collector<String> out) throws Exception {
            long[] st = entries.value();
            if (st == null) return;
            Tuple2<Long, Long> key = ctx.getCurrentKey();
            int n = st.length / NF;
            long[] keep = new long[st.length];
            int kept = 0;
            List<long[]> done = new ArrayList<>(1);
            for (int i = 0; i < n; i++) {
                int o = i * NF;
                if (st[o + WS] + W <= ts) {
                    out.collect(toJson(key.f0, key.f1, st, o));
                    emitted.add(1);
                    done.add(new long[] {st[o + WS], st[o + MAXT]});
                } else {
                    System.arraycopy(st, o, keep, kept * NF, NF);
                    kept++;
                }
            }
            if (kept == 0) {
                entries.clear();
                seen.clear();
            } else if (!done.isEmpty()) {
                entries.update(Arrays.copyOf(keep, kept * NF));
                Iterator<Map.Entry<String, long[]>> it = seen.iterator();
                while (it.hasNext()) {
                    long t = it.next().getValue()[0];
                    for (long[] w : done) {
                        if (w[0] <= t && t <= w[1]) { it.remove(); break; }
                    }
                }
            }
        }
    }

    /** The canonical output record: the contract's field order, no whitespace. */
    static String toJson(long profileId, long titleId, long[] s, int o) {
        StringBuilder b = new StringBuilder(256);
        b.append("{\"profile_id\":").append(profileId)
                .append(",\"title_id\":").append(titleId)
                .append(",\"window_start\":").append(s[o + WS])
                .append(",\"impressions\":").append(s[o + IMPS])
                .append(",\"plays\":").append(s[o + PLAYS]);
        nullable(b, ",\"first_impression_time\":", s[o + FIRST_IMP]);
        nullable(b, ",\"last_impression_time\":", s[o + LAST_IMP]);
        nullable(b, ",\"best_row\":", s[o + BEST_ROW]);
        nullable(b, ",\"best_rank\":", s[o + BEST_RANK]);
        b.append(",\"devices\":[");
        boolean first = true;
        for (int d = 0; d < DEVICES.length; d++) {
            if ((s[o + DEVS] & (1L << d)) != 0) {
                if (!first) b.append(',');
                b.append('"').append(DEVICES[d]).append('"');
                first = false;
            }
        }
        b.append(']');
        nullable(b, ",\"first_play_time\":", s[o + FIRST_PLAY]);
        b.append(",\"play_duration_ms\":").append(s[o + DURATION]).append('}');
        return b.toString();
    }

    private static void nullable(StringBuilder b, String name, long v) {
        b.append(name);
        if (v == NULL) b.append("null");
        else b.append(v);
    }

    // ------------------------------------------------------------------ sink

    /** Writes each subtask's lines to DIR/PREFIX-SUBTASK.jsonl (plain buffered file I/O). */
    static final class LineFileSink implements Sink<String> {
        private final String dir, prefix;

        LineFileSink(String dir, String prefix) {
            this.dir = dir;
            this.prefix = prefix;
        }

        @Override
        public SinkWriter<String> createWriter(WriterInitContext ctx) throws IOException {
            File f = new File(dir, prefix + "-" + ctx.getTaskInfo().getIndexOfThisSubtask() + ".jsonl");
            BufferedWriter w = new BufferedWriter(new OutputStreamWriter(
                    new FileOutputStream(f), StandardCharsets.UTF_8), 1 << 16);
            return new SinkWriter<String>() {
                @Override
                public void write(String line, Context c) throws IOException {
                    w.write(line);
                    w.write('\n');
                }

                @Override
                public void flush(boolean endOfInput) throws IOException {
                    w.flush();
                }

                @Override
                public void close() throws IOException {
                    w.close();
                }
            };
        }
    }

    // ------------------------------------------------------------------ main

    static KeySelector<Event, Tuple2<Long, Long>> byKey() {
        return e -> Tuple2.of(e.profileId, e.titleId);
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> opt = new TreeMap<>();
        opt.put("parallelism", String.valueOf(Runtime.getRuntime().availableProcessors()));
        opt.put("sink", "files");
        opt.put("alignment-ms", "3600000"); // max drift between the files' watermarks; 0 = none
        opt.put("alignment-update-ms", "100");
        opt.put("watermark-step-ms", "10000"); // 0 = periodic emission only
        opt.put("rocksdb-dir", "/var/tmp/flink-rocksdb");
        opt.put("managed-memory", "256m");
        opt.put("object-reuse", "true");
        for (int i = 0; i + 1 < args.length; i += 2) {
            if (!args[i].startsWith("--")) throw new IllegalArgumentException("bad argument " + args[i]);
            opt.put(args[i].substring(2), args[i + 1]);
        }
        String input = opt.get("input"), output = opt.get("output");
        if (input == null || output == null) {
            System.err.println("usage: ImpressionPlayJoin --input DIR --output DIR [options]");
            System.exit(2);
        }
        int parallelism = Integer.parseInt(opt.get("parallelism"));
        long alignMs = Long.parseLong(opt.get("alignment-ms"));
        long stepMs = Long.parseLong(opt.get("watermark-step-ms"));
        new File(output).mkdirs();

        Configuration conf = new Configuration();
        conf.setString("state.backend.type", "rocksdb");
        conf.setString("state.backend.rocksdb.localdir", opt.get("rocksdb-dir"));
        conf.setString("taskmanager.memory.managed.size", opt.get("managed-memory"));
        conf.setString("io.tmp.dirs", "/var/tmp/flink-tmp");
        // One split per source, so source-level alignment is exact; FileSource readers do
        // not implement split-level pausing.
        conf.setString("pipeline.watermark-alignment.allow-unaligned-source-splits", "true");
        // Flink 2.3 checks alignment against a watermark sampled 3 update intervals ago by
        // default, which lets a plays file (7x sparser than impressions) run hours of event
        // time ahead; 0 restores the check against the latest watermark.
        conf.setString("pipeline.watermark-alignment.buffer-size", "0");
        // Any other Flink option: --conf 'key=value;key=value'.
        if (opt.containsKey("conf")) {
            for (String kv : opt.get("conf").split(";")) {
                if (kv.isBlank()) continue;
                int eq = kv.indexOf('=');
                conf.setString(kv.substring(0, eq).trim(), kv.substring(eq + 1).trim());
            }
        }
        // No checkpointing (execution.checkpointing.interval unset): a bounded replay.
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
        env.setParallelism(parallelism);
        if (Boolean.parseBoolean(opt.get("object-reuse"))) env.getConfig().enableObjectReuse();

        File[] files = new File(input).listFiles();
        if (files == null) throw new IOException("no directory " + input);
        Arrays.sort(files);
        DataStream<Event> impressions = null, plays = null;
        DataStream<String> rejected = null;
        for (File f : files) {
            String name = f.getName();
            boolean play;
            if (name.startsWith("impressions-") && name.endsWith(".jsonl")) play = false;
            else if (name.startsWith("plays-") && name.endsWith(".jsonl")) play = true;
            else continue;
            WatermarkStrategy<Event> wms = WatermarkStrategy.<Event>forGenerator(c -> new BoundedDisorder(stepMs))
                    .withTimestampAssigner((e, ts) -> e.malformed == null ? e.time : Long.MIN_VALUE);
            if (alignMs > 0) {
                wms = wms.withWatermarkAlignment("join-inputs", Duration.ofMillis(alignMs),
                        Duration.ofMillis(Long.parseLong(opt.get("alignment-update-ms"))));
            }
            FileSource<Event> src = FileSource.forRecordStreamFormat(new JsonLinesFormat(play),
                    new Path(f.getAbsolutePath())).build();
            SingleOutputStreamOperator<Event> valid = env
                    .fromSource(src, wms, name, TypeInformation.of(Event.class))
                    .setParallelism(1)
                    .process(new Validate())
                    .name("validate " + name)
                    .setParallelism(1);
            DataStream<String> bad = valid.getSideOutput(REJECTED);
            rejected = rejected == null ? bad : rejected.union(bad);
            if (play) plays = plays == null ? valid : plays.union(valid);
            else impressions = impressions == null ? valid : impressions.union(valid);
        }
        if (impressions == null || plays == null) throw new IOException("no input files in " + input);

        TypeInformation<Tuple2<Long, Long>> keyType = Types.TUPLE(Types.LONG, Types.LONG);
        SingleOutputStreamOperator<String> joined = impressions.keyBy(byKey(), keyType)
                .connect(plays.keyBy(byKey(), keyType))
                .process(new Join(), Types.STRING)
                .name("join");
        rejected = rejected.union(joined.getSideOutput(REJECTED));
        if (opt.get("sink").equals("discard")) {
            joined.sinkTo(new DiscardingSink<>()).name("discard");
        } else {
            joined.sinkTo(new LineFileSink(output, "part")).name("entries");
        }
        rejected.sinkTo(new LineFileSink(output, "_rejected")).name("rejected").setParallelism(1);

        long t0 = System.nanoTime();
        JobExecutionResult res = env.execute("impression-play join");
        double wall = (System.nanoTime() - t0) / 1e9;

        Map<String, Object> acc = new TreeMap<>(res.getAllAccumulatorResults());
        StringBuilder b = new StringBuilder("{");
        b.append("\"job_seconds\":").append(res.getNetRuntime() / 1000.0)
                .append(",\"execute_seconds\":").append(wall)
                .append(",\"parallelism\":").append(parallelism)
                .append(",\"alignment_ms\":").append(alignMs)
                .append(",\"watermark_step_ms\":").append(stepMs)
                .append(",\"sink\":\"").append(opt.get("sink")).append('"');
        for (Map.Entry<String, Object> a : acc.entrySet()) {
            b.append(",\"").append(a.getKey()).append("\":").append(a.getValue());
        }
        b.append('}');
        Files.write(new File(output, "_summary.json").toPath(),
                (b + "\n").getBytes(StandardCharsets.UTF_8));
        System.out.println(b);
    }
}
