/*
 * DriverCheck.java -- pgpoly's foreign tables driven by pgjdbc (Debian's
 * libpostgresql-jdbc-java), each answer compared with the same calls on a
 * native copy of the rows.  Run by test/jdbc/run.sh (`make jdbc-check`), not
 * by `make test`: it needs a JDK.
 *
 * Checks, for a Redis hash table and an Elasticsearch index beside native
 * copies, under the connection properties given as the first argument:
 *   - prepared statements executed past prepareThreshold (server-prepared,
 *     then generic plans), with int, double, numeric, text[], timestamp and
 *     OffsetDateTime parameters;
 *   - setFetchSize with autocommit off: a portal read in chunks while other
 *     statements (a count, an UPDATE of the same table) run in the same
 *     transaction;
 *   - addBatch/executeBatch inserts and updates;
 *   - getGeneratedKeys (INSERT ... RETURNING *): each returned row must be
 *     the row a read of it finds right after;
 *   - autosave=always: failing statements between chunks of a portal, then
 *     a write that COMMIT must keep.
 * Prints "N passed, N failed" and exits 1 on any failure.
 */
import java.math.BigDecimal;
import java.sql.*;
import java.util.*;

public class DriverCheck {
	static int passed, failed;
	static String base, props;

	static Connection connect(String extra) throws SQLException {
		return DriverManager.getConnection(base + props + extra);
	}

	/*
	 * The rows of rs as text, values through getObject: getString of a
	 * float8 differs between text ("0") and binary ("0.0") transfer, which
	 * pgjdbc switches to once a statement is server-prepared.
	 */
	static List<String> rows(ResultSet rs) throws SQLException {
		List<String> out = new ArrayList<>();
		int n = rs.getMetaData().getColumnCount();
		while (rs.next()) {
			StringBuilder sb = new StringBuilder();
			for (int i = 1; i <= n; i++) {
				Object o = rs.getObject(i);
				if (o instanceof Number)
					o = new BigDecimal(o.toString()).stripTrailingZeros().toPlainString();
				sb.append(o).append('|');
			}
			out.add(sb.toString());
		}
		return out;
	}

	static List<String> query(Connection c, String sql) throws SQLException {
		try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
			return rows(rs);
		}
	}

	static void check(String what, Object got, Object want) {
		if (got.equals(want)) {
			passed++;
			return;
		}
		failed++;
		System.out.println("FAILED " + what + "\n  foreign: " + got + "\n  native:  " + want);
	}

	interface Run {
		Object on(Connection c, String table, String k) throws SQLException;
	}

	/*
	 * The same calls on the foreign table t[0] and on its native copy t[1];
	 * t[2] is their key column.
	 */
	static void differential(String what, Connection c, String[] t, Run run) throws SQLException {
		check(what + " (" + t[0] + ")", run.on(c, t[0], t[2]), run.on(c, t[1], t[2]));
	}

	static Object prepared(Connection c, String t, String k) throws SQLException {
		List<String> out = new ArrayList<>();
		try (PreparedStatement ps = c.prepareStatement(
				"SELECT " + k + ", n, d, num, ts FROM " + t + " WHERE (" + k + " = ANY(?) OR n > ?) "
				+ "AND d < ? AND num >= ? AND ts >= ? AND ts < ? ORDER BY 1")) {
			for (int rep = 0; rep < 9; rep++) {
				ps.setArray(1, c.createArrayOf("text", new String[] {"k" + rep, null, "zz"}));
				ps.setInt(2, 20 + rep);
				ps.setDouble(3, 40.5 - rep);
				ps.setBigDecimal(4, new BigDecimal("0.125").multiply(BigDecimal.valueOf(rep)));
				ps.setTimestamp(5, Timestamp.valueOf("2024-01-0" + (1 + rep % 3) + " 00:00:00"));
				ps.setObject(6, java.time.OffsetDateTime.parse("2024-01-20T08:00:00+05:45"));
				try (ResultSet rs = ps.executeQuery()) {
					out.add(rep + ":" + rows(rs));
				}
			}
		}
		return out;
	}

	static Object fetchSize(Connection c, String t, String k) throws SQLException {
		List<String> out = new ArrayList<>();
		c.setAutoCommit(false);
		try (Statement s = c.createStatement(); Statement s2 = c.createStatement()) {
			s.setFetchSize(4);
			try (ResultSet rs = s.executeQuery("SELECT " + k + ", n FROM " + t + " ORDER BY 1")) {
				for (int i = 0; rs.next(); i++) {
					out.add(rs.getString(1) + "=" + rs.getString(2));
					if (i % 5 == 0)
						out.add("count:" + query(c, "SELECT count(*) FROM " + t + " WHERE n > " + i));
					if (i == 7)
						s2.executeUpdate("UPDATE " + t + " SET n = n + 1 WHERE " + k + " IN (SELECT "
										 + k + " FROM " + t + " ORDER BY 1 DESC LIMIT 2)");
				}
			}
			out.add("after:" + query(c, "SELECT " + k + ", n FROM " + t + " ORDER BY 1 DESC LIMIT 3"));
		}
		c.rollback();
		c.setAutoCommit(true);
		return out;
	}

	static Object batches(Connection c, String t, String k) throws SQLException {
		c.setAutoCommit(false);
		try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + t + " (" + k + ", n, d) VALUES (?, ?, ?)")) {
			for (int i = 0; i < 300; i++) {
				ps.setString(1, "jb" + i);
				ps.setInt(2, i);
				ps.setDouble(3, i / 3.0);
				ps.addBatch();
			}
			ps.executeBatch();
		}
		try (PreparedStatement ps = c.prepareStatement("UPDATE " + t + " SET n = n * 2 WHERE " + k + " = ?")) {
			for (int i = 0; i < 300; i += 3) {
				ps.setString(1, "jb" + i);
				ps.addBatch();
			}
			ps.executeBatch();
		}
		c.commit();
		List<String> out = query(c, "SELECT " + k + ", n, d FROM " + t + " WHERE " + k + " LIKE 'jb%' ORDER BY 1");
		try (Statement s = c.createStatement()) {
			s.executeUpdate("DELETE FROM " + t + " WHERE " + k + " LIKE 'jb%'");
		}
		c.commit();
		c.setAutoCommit(true);
		return out;
	}

	/* getGeneratedKeys: each row returned against a read of it right after. */
	static void generatedKeys(Connection c, String t, String k) throws SQLException {
		for (boolean auto : new boolean[] {true, false}) {
			c.setAutoCommit(auto);
			try (PreparedStatement ps = c.prepareStatement(
					"INSERT INTO " + t + " (" + k + ", n, d) VALUES (?, ?, ?)", Statement.RETURN_GENERATED_KEYS)) {
				for (int i = 0; i < 7; i++) {
					ps.setString(1, "gk" + i);
					ps.setInt(2, i);
					ps.setDouble(3, 0.1 * i);
					ps.executeUpdate();
					List<String> got;
					try (ResultSet rs = ps.getGeneratedKeys()) {
						got = rows(rs);
					}
					check("getGeneratedKeys of " + t + " (autocommit " + auto + ")", got,
						  query(c, "SELECT * FROM " + t + " WHERE " + k + " = 'gk" + i + "'"));
				}
			}
			if (!auto)
				c.commit();
			try (Statement s = c.createStatement()) {
				s.executeUpdate("DELETE FROM " + t + " WHERE " + k + " LIKE 'gk%'");
			}
			if (!auto)
				c.commit();
		}
		c.setAutoCommit(true);
	}

	static Object autosave(Connection c, String t, String k) throws SQLException {
		List<String> out = new ArrayList<>();
		c.setAutoCommit(false);
		try (Statement s = c.createStatement(); Statement s2 = c.createStatement()) {
			s.setFetchSize(3);
			try (ResultSet rs = s.executeQuery("SELECT " + k + ", n FROM " + t)) {
				for (int i = 0; rs.next(); i++) {
					out.add(rs.getString(1) + "=" + rs.getString(2));
					if (i % 4 != 1)
						continue;
					try {
						s2.executeQuery("SELECT " + k + "::int FROM " + t);
						out.add("no error");
					} catch (SQLException e) {
						out.add("error " + e.getSQLState());
					}
				}
			}
			s2.executeUpdate("INSERT INTO " + t + " (" + k + ", n) VALUES ('autosave1', 1)");
		}
		c.commit();
		out.add("committed:" + query(c, "SELECT n FROM " + t + " WHERE " + k + " = 'autosave1'"));
		try (Statement s = c.createStatement()) {
			s.executeUpdate("DELETE FROM " + t + " WHERE " + k + " = 'autosave1'");
		}
		c.commit();
		c.setAutoCommit(true);
		Collections.sort(out);
		return out;
	}

	public static void main(String[] args) throws Exception {
		base = "jdbc:postgresql://" + System.getenv("PGHOST") + ":" + System.getenv("PGPORT")
			+ "/" + System.getenv("PGDATABASE") + "?user=" + System.getenv("PGUSER");
		props = args.length > 0 ? args[0] : "";
		System.out.println("pgjdbc with \"" + props + "\", JVM time zone "
						   + TimeZone.getDefault().getID());
		String[][] pairs = {{"rh", "nh", "k"}, {"e", "ne", "_id"}};
		try (Connection c = connect("")) {
			for (String[] t : pairs) {
				differential("prepared statements", c, t, DriverCheck::prepared);
				differential("setFetchSize portal with statements between chunks", c, t,
							 DriverCheck::fetchSize);
				differential("executeBatch", c, t, DriverCheck::batches);
				generatedKeys(c, t[0], t[2]);
			}
		}
		try (Connection c = connect("&autosave=always")) {
			for (String[] t : pairs)
				differential("autosave=always", c, t, DriverCheck::autosave);
		}
		System.out.println(passed + " passed, " + failed + " failed");
		System.exit(failed == 0 ? 0 : 1);
	}
}
