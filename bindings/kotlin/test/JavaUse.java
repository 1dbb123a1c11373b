// The Kotlin binding as a Java program calls it: static load, a Consumer for the params, plain
// getters, Sequence pieces through an iterator. make test-bindings compiles and runs it.
import tmac.Tmac;
import tmac.ModelInfo;

public class JavaUse {
    public static void main(String[] args) {
        try (Tmac m = Tmac.load(args[0], p -> { p.setNCtx(128); p.setMaxTokens(8); })) {
            ModelInfo info = m.info();
            StringBuilder sb = new StringBuilder();
            m.generate("The capital of France is").iterator().forEachRemaining(sb::append);
            if (info.getNCtx() != 128 || !sb.toString().contains("Paris")) {
                System.err.println("JavaUse: unexpected " + info + " / " + sb);
                System.exit(1);
            }
            System.out.println("JavaUse: OK (" + info.getArchitecture() + ", " + sb.toString().trim() + ")");
        }
    }
}
